package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"time"

	"github.com/onairhq/onair/ingest"
)

// reloadChannels re-reads the configuration as at start (file, environment,
// command line) and hands its channel list, with the catalog's, to ingest, on
// SIGHUP. Live broadcasts go on; removed channels end; changed keys apply to
// the next publish. Only channels and keys change: any other setting takes a
// restart. An invalid configuration is refused and the running one kept.
func reloadChannels(args []string, a *app, log *slog.Logger) {
	fs := flag.NewFlagSet("onair serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := loadConfig(fs, args, envLookup)
	if err != nil {
		log.Error("reload refused: the configuration is invalid; the running one stays", "err", err)
		return
	}
	names, keys, _ := cfg.channelKeys() // validated in loadConfig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.setConfigChannels(ctx, channelConfigs(names, keys)); err != nil {
		log.Error("reload refused", "err", err)
		return
	}
	log.Info("configuration reloaded: channels and stream keys (other settings take a restart)", "channels", len(names))
}

// channelConfigs pairs the configuration's channel names with their keys.
func channelConfigs(names []string, keys map[string][]string) []ingest.ChannelConfig {
	var out []ingest.ChannelConfig
	for _, n := range names {
		out = append(out, ingest.ChannelConfig{Name: n, Keys: keys[n]})
	}
	return out
}
