package main

import (
	"context"
	"time"

	"github.com/onairhq/onair/catalog"
	"github.com/onairhq/onair/ingest"
)

// channelSet is the channels a node serves: those of the configuration and
// those of the catalog (made through the API), kept together so the hub gets
// both at once.
type channelSet struct {
	config []ingest.ChannelConfig // from the configuration; the API cannot change them
	titles map[string]string      // catalog channels' titles
}

// configured reports whether name is a channel of the configuration.
func (a *app) configured(name string) bool {
	a.channelsMu.Lock()
	defer a.channelsMu.Unlock()
	for _, c := range a.channels.config {
		if c.Name == name {
			return true
		}
	}
	return false
}

// title is a channel's display title: its catalog title, or its name.
func (a *app) title(name string) string {
	a.channelsMu.Lock()
	defer a.channelsMu.Unlock()
	if t := a.channels.titles[name]; t != "" {
		return t
	}
	return name
}

// setConfigChannels replaces the configuration's channels (a reload) and applies them.
func (a *app) setConfigChannels(ctx context.Context, config []ingest.ChannelConfig) error {
	a.channelsMu.Lock()
	a.channels.config = config
	a.channelsMu.Unlock()
	return a.applyChannels(ctx)
}

// applyChannels hands the hub the configuration's channels and the catalog's.
// A catalog that cannot be read leaves the hub as it is.
func (a *app) applyChannels(ctx context.Context) error {
	list, err := a.catalog.Store.List(ctx)
	if err != nil {
		return err
	}
	a.channelsMu.Lock()
	defer a.channelsMu.Unlock() // held across SetChannels: applies happen in order
	chans := append([]ingest.ChannelConfig(nil), a.channels.config...)
	titles := make(map[string]string, len(list))
	inConfig := make(map[string]bool, len(chans))
	for _, c := range chans {
		inConfig[c.Name] = true
	}
	for _, c := range list {
		if inConfig[c.Name] {
			a.log.Warn("a channel made through the API is also in the configuration: the configuration's keys apply", "channel", c.Name)
			continue
		}
		chans = append(chans, ingest.ChannelConfig{Name: c.Name, KeyHashes: c.Hashes()})
		titles[c.Name] = c.Title
	}
	if err := a.hub.SetChannels(chans); err != nil {
		return err
	}
	a.channels.titles = titles
	return nil
}

// channelsChanged applies a change this node made to the catalog; with
// Redis, other nodes apply it when they hear of it (watchCatalog).
func (a *app) channelsChanged(ctx context.Context) {
	if err := a.applyChannels(ctx); err != nil {
		a.log.Error("channel change saved but not applied here yet", "err", err)
	}
}

// watchCatalog applies every node's changes to a catalog kept in Redis, until ctx ends.
func (a *app) watchCatalog(ctx context.Context, store *catalog.RedisStore) {
	store.Watch(ctx, func() {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.applyChannels(actx); err != nil && ctx.Err() == nil {
			a.log.Warn("cannot read the channel catalog from Redis; the channels known stay", "err", err)
		}
	})
}
