package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/registry"
	"github.com/onairhq/onair/relay"
)

// cluster is what a node needs of the others when several share one Redis:
// the registry of who holds which channel, and the relay serving the HLS of
// channels held elsewhere.
type cluster struct {
	a     *app
	reg   *registry.Registry
	relay *relay.Relay // nil unless the node is an origin

	mu     sync.Mutex
	live   []registry.Record // every node's live channels, as last read
	readAt time.Time
}

// liveListTTL is how long a read of every node's live channels is reused.
const liveListTTL = time.Second

func newCluster(a *app, rdb redis.UniversalClient, node string, rs roles) *cluster {
	c := &cluster{a: a}
	c.reg = registry.New(rdb, registry.Options{
		Node:   node,
		Addr:   a.nodeAddr,
		TTL:    a.cfg.RegistryTTL,
		Grace:  a.cfg.Grace,
		Held:   c.held,
		Lost:   c.lost,
		Resume: c.resume,
		Logger: a.log.With("part", "registry"),
	})
	if rs.has(roleOrigin) {
		c.relay = relay.New(relay.Options{
			Locate: c.locate,
			Self:   node,
			Grace:  a.cfg.Grace,
			// Under LL-HLS players' blocking-reload timeout (hls.js: about 4 parts).
			Hold:   2 * a.cfg.HLSPartDuration,
			Logger: a.log.With("part", "relay"),
		})
	}
	return c
}

// held lists the channels this node publishes (or keeps in their grace).
func (c *cluster) held() []registry.Record {
	var out []registry.Record
	for _, st := range c.a.hub.Channels() {
		if !publishing(st) {
			continue
		}
		raw, _ := json.Marshal(st)
		rec := registry.Record{Channel: st.Name, Publishing: st.PublisherConnected, Status: raw}
		if msn, disc, ok := c.a.seg.Position(st.Name); ok {
			rec.Position = registry.Position{MSN: msn, Disc: disc}
		}
		out = append(out, rec)
	}
	return out
}

// resume makes the channel's playlist here continue the one another node
// served: after the last complete segment its last heartbeat gave, or after
// the last one this node's viewers were shown (the relay completes it for
// them), whichever is later: the heartbeat may be a segment behind.
func (c *cluster) resume(channel string, pos registry.Position) {
	msn := pos.MSN
	if c.relay != nil {
		if last, ok := c.relay.LastSegment(channel); ok {
			msn = max(msn, last+1)
		}
	}
	c.a.seg.Resume(channel, msn, pos.Disc)
}

// publishing reports whether a channel is this node's to publish: live here, or
// with its publisher connected before the broadcast starts.
func publishing(st ingest.ChannelStatus) bool { return st.Live || st.PublisherConnected }

// publishingHere reports whether this node holds channel.
func (c *cluster) publishingHere(channel string) bool {
	st, ok := c.a.hub.Channel(channel)
	return ok && publishing(st)
}

// lost ends a broadcast here whose channel another node publishes now.
func (c *cluster) lost(channel string, holder registry.Record) {
	c.a.hub.Relinquish(channel, "published on node "+holder.Node+" now")
}

func (c *cluster) locate(ctx context.Context, channel string) (relay.Holder, bool, error) {
	rec, ok, err := c.reg.Lookup(ctx, channel)
	if errors.Is(err, registry.ErrEnded) {
		err = fmt.Errorf("%w (%w)", relay.ErrEnded, err)
	}
	return relay.Holder{Node: rec.Node, Addr: rec.Addr}, ok, err
}

// BroadcastStarted implements ingest.Observer.
func (c *cluster) BroadcastStarted(*ingest.Broadcast) {}

// BroadcastEnded implements ingest.Observer: the channel's claim goes at
// once, unless a publisher here still holds it (a codec change, a new
// broadcast) or another node took it.
func (c *cluster) BroadcastEnded(b *ingest.Broadcast, reason ingest.EndReason, _ string) {
	if reason == ingest.EndMoved {
		return
	}
	if c.publishingHere(b.Channel) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.reg.Release(ctx, b.Channel, reason == ingest.EndTakenDown); err != nil {
		c.a.log.Warn("channel claim not released: other nodes see it live until it expires", "channel", b.Channel, "err", err, "expires_in", c.a.cfg.RegistryTTL)
	}
}

// forward passes a request about a channel live on another node to that
// node, with body (nil: none), and its answer back; it reports whether it
// did. A request passed on is never passed on again. The admin API uses it
// for takedowns (the broadcast is there) and the directory for thumbnails
// (the decoder that has them is there).
func (c *cluster) forward(w http.ResponseWriter, r *http.Request, channel string, body []byte) bool {
	if r.Header.Get(relay.Header) != "" {
		return false
	}
	if c.publishingHere(channel) {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	rec, ok, err := c.reg.Lookup(ctx, channel)
	if err != nil || !ok || rec.Node == c.reg.Node() || rec.Status == nil {
		return false // not live elsewhere (an ended record has no status)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	fwd, err := http.NewRequestWithContext(ctx, r.Method, strings.TrimSuffix(rec.Addr, "/")+r.URL.Path, rd)
	if err != nil {
		return false
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept"} {
		if v := r.Header.Get(h); v != "" {
			fwd.Header.Set(h, v)
		}
	}
	fwd.Header.Set(relay.Header, "1")
	resp, err := http.DefaultClient.Do(fwd)
	if err != nil {
		c.a.log.Warn("request not passed to the node publishing the channel", "channel", channel, "node", rec.Node, "path", r.URL.Path, "err", err)
		return false
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Cache-Control", "ETag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 8<<20))
	return true
}

// elsewhere returns the channels live on other nodes, read at most once a
// second (every 5 s while Redis is unreachable); on an error, the last read.
func (c *cluster) elsewhere() []registry.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	ttl := liveListTTL
	if c.reg.Down() {
		ttl = 5 * liveListTTL // an API call must not wait on a Redis that is gone
	}
	if time.Since(c.readAt) < ttl {
		return c.live
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	recs, err := c.reg.Live(ctx)
	c.readAt = time.Now()
	if err != nil {
		return c.live
	}
	c.live = c.live[:0]
	for _, r := range recs {
		if r.Node != c.reg.Node() {
			c.live = append(c.live, r)
		}
	}
	return c.live
}

// channels is every channel this node knows, with the state of those live on
// other nodes taken from the node publishing them.
func (c *cluster) channels(local []ingest.ChannelStatus) []ingest.ChannelStatus {
	byName := map[string]int{}
	for i, st := range local {
		byName[st.Name] = i
	}
	for _, rec := range c.elsewhere() {
		var st ingest.ChannelStatus
		if json.Unmarshal(rec.Status, &st) != nil || st.Name != rec.Channel {
			continue
		}
		i, known := byName[rec.Channel]
		switch {
		case !known:
			byName[rec.Channel] = len(local)
			local = append(local, st)
		case !local[i].Live:
			// Bans are what this node knows (they are shared through Redis too).
			st.BannedUntil, st.BanReason = local[i].BannedUntil, local[i].BanReason
			local[i] = st
		}
	}
	return local
}

// hlsHandler serves /hls/: a channel with a playlist here from the
// segmenter, any other from the relay (on an origin node). A relay's own
// request is always answered from here, never relayed on.
type hlsHandler struct {
	local  http.Handler
	relay  *relay.Relay
	serves func(channel string) bool // the segmenter has a playlist of channel
	ready  func(channel string) bool // ... with a complete segment
	known  func(channel string) bool // the channel may exist: worth asking the registry
}

func (h hlsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.relay == nil || r.Header.Get(relay.Header) != "" {
		h.local.ServeHTTP(w, r)
		return
	}
	rest, _ := strings.CutPrefix(r.URL.Path, "/hls/")
	channel, _, _ := strings.Cut(rest, "/")
	// A channel that just moved here from another node is still answered
	// from the relay until its playlist here has a segment: the relay
	// completes the other node's last playlist for the players, which then
	// join this one where that one stopped.
	// Published here is the common case: asked first, it spares every local
	// request the channel lookup (known).
	if h.serves(channel) && (h.ready(channel) || !h.relay.Bridging(channel)) || !h.known(channel) {
		h.local.ServeHTTP(w, r)
		return
	}
	h.relay.ServeHTTP(w, r)
}

// defaultNodeAddr is the base URL other nodes reach this one at when
// node-addr is not set: the HTTP listener's address if it is a specific one,
// else the node's first non-loopback address, with the HTTP port.
func defaultNodeAddr(httpAddr net.Addr) string {
	host, port, _ := net.SplitHostPort(httpAddr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
					host = ipn.IP.String()
					break
				}
			}
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
