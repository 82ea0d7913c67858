package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	rtmp "github.com/yutopp/go-rtmp"
)

// Defaults for Options fields left zero.
const (
	DefaultApp        = "live"
	DefaultGrace      = 15 * time.Second
	DefaultQueueSize  = 1024
	DefaultConnsPerIP = 32
	// DefaultMaxConns bounds all RTMP connections, publishing or not.
	DefaultMaxConns = 1000
	// DefaultPublishTimeout is how long a connection may take from accept to a successful publish.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultAuthFailures is how many refused keys an address may send before it is slowed down.
	DefaultAuthFailures = 5
	// DefaultAuthBackoffMax is the longest an address is locked out after refused keys.
	DefaultAuthBackoffMax = 5 * time.Minute
	// DefaultIdleTimeout is how long a publisher may send nothing before it is dropped.
	DefaultIdleTimeout = 30 * time.Second
)

// Connection limits.
const (
	idleBeforePublish = 10 * time.Second // after an unpublish, until the connection publishes again
	// go-rtmp reads through a bufio.Reader of this size (its default, 4 KiB,
	// costs a read system call every 4 KiB). A real-time publisher's reads
	// bring 5 to 6 KiB on average; only keyframe bursts fill it.
	readBufferSize = 16 << 10
	webhookTimeout = 3 * time.Second
)

var channelNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidChannelName reports whether name is a valid public channel name.
func ValidChannelName(name string) bool { return channelNameRE.MatchString(name) }

// ChannelConfig registers one channel and its secret stream keys.
type ChannelConfig struct {
	Name string
	Keys []string
	// KeyHashes are further keys known only by their SHA-256 (KeyHash), as
	// the channels created through the admin API keep them.
	KeyHashes [][32]byte
}

// KeyHash is what a hub compares stream keys by.
func KeyHash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// Options configure a Hub.
type Options struct {
	// App is the RTMP application name publishers connect to (default "live").
	App      string
	Channels []ChannelConfig
	// Grace is how long a broadcast waits for a dropped publisher to return (default 15 s;
	// negative disables the grace period).
	Grace time.Duration
	// Takeover lets a second publisher with a valid key replace the live one instead of being refused.
	Takeover bool
	// AuthWebhook, when set, decides publishes instead of the key list (POST JSON, 2xx accepts).
	AuthWebhook string
	// QueueSize bounds each consumer's Feed (default 1024 units).
	QueueSize int
	// ConnsPerIP bounds simultaneous RTMP connections from one IP address (an
	// IPv6 address counts with its whole /64), so a connection flood cannot
	// starve the publishers (default 32; negative: no limit).
	ConnsPerIP int
	// MaxConns bounds all simultaneous RTMP connections (default 1000; negative: no limit).
	MaxConns int
	// PublishTimeout is how long a connection may take from accept to a
	// successful publish, however it trickles its bytes (default 10 s).
	PublishTimeout time.Duration
	// AuthFailures is how many refused stream keys one address (IPv4, or IPv6
	// /64) may send before each further refusal locks it out, for 1 s, then
	// twice as long each time, up to AuthBackoffMax (default 5; negative: never).
	AuthFailures int
	// AuthBackoffMax is the longest such lockout (default 5 min).
	AuthBackoffMax time.Duration
	// IdleTimeout is how long a publisher may send nothing before it is
	// dropped (and its broadcast waits out the grace period) (default 30 s).
	IdleTimeout time.Duration
	// Bans, when set, keeps bans beyond this process (a restart, other
	// nodes): TakeDown and Unban write it, every publish reads it. When it
	// cannot be reached, the bans this hub set itself still apply.
	Bans Bans
	// Claims, if set, keeps each channel to one publisher across nodes.
	Claims Claims
	Logger *slog.Logger
}

// Bans keeps channel bans beyond one hub (package bans has a file and a
// Redis implementation).
type Bans interface {
	// Ban refuses publishes on channel until the given time.
	Ban(ctx context.Context, channel string, until time.Time, reason string) error
	// Lift ends the channel's ban.
	Lift(ctx context.Context, channel string) error
	// Banned returns the ban in force on channel (zero time: none).
	Banned(ctx context.Context, channel string) (until time.Time, reason string, err error)
}

// Claims shares which node publishes each channel among nodes (package
// registry keeps them in Redis), so that a channel has one publisher across
// all of them.
type Claims interface {
	// Claim makes this node the one publishing channel. It fails with an
	// error wrapping ErrClaimed while another node publishes it, unless
	// takeover is set.
	Claim(ctx context.Context, channel string, takeover bool) error
}

// ErrClaimed is the error a Claims returns for a channel published on another node.
var ErrClaimed = errors.New("published on another node")

// bansTimeout bounds one call to Options.Bans (and to Options.Claims).
const bansTimeout = 2 * time.Second

// Hub is the channel registry and RTMP ingest server: it accepts publishers,
// tracks who is live and fans each broadcast out to the registered consumers.
type Hub struct {
	opts      Options
	log       *slog.Logger
	rtmpLog   logrus.FieldLogger
	client    *http.Client
	consumers []Consumer
	observers []Observer

	ctx    context.Context // lifetime of consumer goroutines
	cancel context.CancelFunc

	refusals logSampler   // refusal log lines, sampled
	backoff  *authBackoff // lockouts after refused keys; nil if disabled

	mu       sync.Mutex
	channels map[string]*channel
	conns    map[*conn]struct{}
	connsBy  map[string]int // open connections per remote address (IPv4, or IPv6 /64)
	shutdown bool

	consumerWG sync.WaitGroup
	connWG     sync.WaitGroup
	events     eventQueue
	stats      stats
}

// channel is one registered channel; its mutable fields are guarded by Hub.mu.
type channel struct {
	name    string
	keys    [][32]byte // SHA-256 of each stream key
	dynamic bool       // created on behalf of the auth webhook

	removed   bool           // dropped by SetChannels: no new publisher may claim it
	publisher *session       // the accepted publisher, if connected
	live      *liveBroadcast // the open broadcast, if any
	banUntil  time.Time
	banReason string
	meter     rateMeter
}

// liveBroadcast is an open Broadcast with its feeds.
type liveBroadcast struct {
	b     *Broadcast
	feeds []*Feed
	ch    *channel
	owner atomic.Pointer[session] // the session feeding it; nil during the grace period
	ended atomic.Bool
	grace *time.Timer
	// next is where the next publisher session's DTS starts, kept current by the owner.
	next atomic.Int64
}

// NewHub validates opts and returns a Hub ready for AddConsumer, AddObserver and Serve.
func NewHub(opts Options) (*Hub, error) {
	if opts.App == "" {
		opts.App = DefaultApp
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.ConnsPerIP == 0 {
		opts.ConnsPerIP = DefaultConnsPerIP
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.AuthFailures == 0 {
		opts.AuthFailures = DefaultAuthFailures
	}
	if opts.AuthBackoffMax <= 0 {
		opts.AuthBackoffMax = DefaultAuthBackoffMax
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Hub{
		opts:     opts,
		log:      opts.Logger.With("component", "ingest"),
		client:   &http.Client{Timeout: webhookTimeout},
		channels: make(map[string]*channel),
		conns:    make(map[*conn]struct{}),
		connsBy:  make(map[string]int),
	}
	h.rtmpLog = newRTMPLogger(h.log)
	h.refusals.log = h.log
	if opts.AuthFailures > 0 {
		h.backoff = newAuthBackoff(opts.AuthFailures, opts.AuthBackoffMax)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.events.hub = h
	h.stats.refused = make(map[string]uint64)
	h.stats.violations = make(map[string]uint64)
	keys, err := h.channelKeys(opts.Channels)
	if err != nil {
		return nil, err
	}
	for name, k := range keys {
		h.channels[name] = &channel{name: name, keys: k}
	}
	return h, nil
}

// channelKeys validates a channel list and returns each channel's keys.
func (h *Hub) channelKeys(channels []ChannelConfig) (map[string][][32]byte, error) {
	out := make(map[string][][32]byte, len(channels))
	for _, cc := range channels {
		if !ValidChannelName(cc.Name) {
			return nil, fmt.Errorf("channel name %q: must match [a-z0-9_-]{1,64}", cc.Name)
		}
		if _, dup := out[cc.Name]; dup {
			return nil, fmt.Errorf("channel %q configured twice", cc.Name)
		}
		if len(cc.Keys)+len(cc.KeyHashes) == 0 && h.opts.AuthWebhook == "" {
			return nil, fmt.Errorf("channel %q has no stream key", cc.Name)
		}
		keys := [][32]byte{}
		for _, k := range cc.Keys {
			if k == "" {
				return nil, fmt.Errorf("channel %q: empty stream key", cc.Name)
			}
			keys = append(keys, KeyHash(k))
		}
		out[cc.Name] = append(keys, cc.KeyHashes...)
	}
	return out, nil
}

// SetChannels replaces the configured channels and their keys, as a reload of
// the configuration does, without touching what goes on: a channel that stays
// keeps its live broadcast, publisher and ban, and its new keys apply to the
// next publish; a channel that goes ends its broadcast (EndRemoved) and
// disconnects its publisher; a new channel may publish at once. Channels the
// auth webhook created are left alone. An invalid list changes nothing.
func (h *Hub) SetChannels(channels []ChannelConfig) error {
	keys, err := h.channelKeys(channels)
	if err != nil {
		return fmt.Errorf("set channels: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var added, removed, changed int
	for name, ch := range h.channels {
		if ch.dynamic {
			continue
		}
		k, keep := keys[name]
		if keep {
			if !sameKeys(ch.keys, k) {
				ch.keys = k
				changed++
			}
			continue
		}
		removed++
		ch.removed = true
		if ch.live != nil {
			h.endLocked(ch.live, EndRemoved, "channel removed from the configuration")
		}
		if ch.publisher != nil {
			ch.publisher.kick("channel removed from the configuration")
			ch.publisher = nil
		}
		delete(h.channels, name)
	}
	for name, k := range keys {
		if _, ok := h.channels[name]; !ok {
			h.channels[name] = &channel{name: name, keys: k}
			added++
		}
	}
	h.log.Info("channels reloaded", "channels", len(keys), "added", added, "removed", removed, "keys_changed", changed)
	return nil
}

func sameKeys(a, b [][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// AddConsumer registers a consumer for every broadcast started from now on. Call it before Serve.
func (h *Hub) AddConsumer(c Consumer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.consumers = append(h.consumers, c)
}

// AddObserver registers an observer of broadcast starts and ends.
func (h *Hub) AddObserver(o Observer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observers = append(h.observers, o)
}

// Serve accepts RTMP connections on ln until ctx is done or Shutdown is called.
// It closes ln. It returns nil when stopped by ctx or Shutdown. A hub may
// serve several listeners at once (RTMP and RTMPS, see ServeTLS): their
// connections share its channels and limits, and Shutdown stops them all.
func (h *Hub) Serve(ctx context.Context, ln net.Listener) error {
	return h.serve(ctx, ln, "rtmp")
}

func (h *Hub) serve(ctx context.Context, ln net.Listener, scheme string) error {
	srv := rtmp.NewServer(&rtmp.ServerConfig{OnConnect: h.onConnect})
	wl := &listener{Listener: ln, hub: h, srv: srv}
	stop := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
		case <-h.ctx.Done():
		case <-stop:
		}
		srv.Close()
	}()
	h.log.Info(scheme+" ingest listening", "addr", ln.Addr().String(), "app", h.opts.App)
	err := srv.Serve(wl)
	close(stop)
	<-watchDone
	if ctx.Err() != nil || h.ctx.Err() != nil || wl.stopped.Load() {
		return nil
	}
	return fmt.Errorf("%s serve: %w", scheme, err)
}

// listener wraps the net.Listener: it tracks accepted connections and turns
// go-rtmp's tight retry on Accept errors into a backoff.
type listener struct {
	net.Listener
	hub     *Hub
	srv     *rtmp.Server
	backoff time.Duration
	stopped atomic.Bool
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			// go-rtmp retries forever unless its own Close was called.
			l.stopped.Store(true)
			go l.srv.Close()
			return nil, err
		}
		if l.backoff == 0 {
			l.backoff = 5 * time.Millisecond
		} else if l.backoff < time.Second {
			l.backoff *= 2
		}
		l.hub.log.Warn("rtmp accept failed", "err", err, "retry_in", l.backoff)
		time.Sleep(l.backoff)
		return nil, err
	}
	l.backoff = 0
	return c, nil
}

// onConnect wraps each accepted connection and gives go-rtmp our handler and
// limits. Connections over a limit are closed at once: go-rtmp's handshake
// then fails on them without reading anything. It waits for the client's
// first handshake bytes before go-rtmp allocates its buffers (about 90 KiB a
// connection), so a connection that never speaks costs a goroutine and little else.
// An RTMPS connection does its TLS handshake first, here on its own
// goroutine (never in the accept loop), within the same publish deadline.
func (h *Hub) onConnect(nc net.Conn) (rwc ioRWC, cfg *rtmp.ConnConfig) {
	defer func() {
		// go-rtmp calls this on its connection goroutine, outside any recover.
		if r := recover(); r != nil {
			h.log.Error("rtmp accept panicked", "remote", nc.RemoteAddr().String(), "panic", r)
			nc.Close()
			rwc, cfg = nc, &rtmp.ConnConfig{Logger: h.rtmpLog}
		}
	}()
	c := newConn(nc, h)
	s := newSession(h, c)
	if reason, msg, args := h.admit(c); reason != "" {
		h.stats.refuse(reason)
		h.refusals.warn(reason, msg, append([]any{"remote", c.ip}, args...)...)
		nc.Close()
	} else if err := c.handshakeTLS(); err != nil {
		c.kill("TLS handshake failed")
	} else if err := c.awaitHello(); err != nil {
		c.kill("no RTMP handshake")
	}
	return c, &rtmp.ConnConfig{
		Handler:          s,
		ReaderBufferSize: readBufferSize,
		ControlState: rtmp.StreamControlStateConfig{
			DefaultBandwidthWindowSize: 6 * 1024 * 1024 / 8,
			// The chunk guard enforces these before go-rtmp reads anything;
			// go-rtmp's own checks stay as a second line.
			MaxChunkSize:      MaxPeerChunkSize,
			MaxChunkStreams:   MaxChunkStreams,
			MaxMessageSize:    MaxMessageSize,
			MaxMessageStreams: 4,
		},
		Logger: h.rtmpLog,
	}
}

// admit counts c in, or says why it is refused (a metric label, a log message and its attributes).
func (h *Hub) admit(c *conn) (reason, msg string, args []any) {
	if left, locked := h.backoff.locked(c.key, time.Now()); locked {
		return "auth_backoff", "rtmp connection refused: too many refused stream keys from this address",
			[]any{"retry_in", left.Round(time.Second)}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.shutdown:
		return "shutdown", "rtmp connection refused: shutting down", nil
	case h.opts.MaxConns > 0 && len(h.conns) >= h.opts.MaxConns:
		return "server_full", "rtmp connection refused: connection limit reached", []any{"limit", h.opts.MaxConns}
	case h.opts.ConnsPerIP > 0 && h.connsBy[c.key] >= h.opts.ConnsPerIP:
		return "too_many_connections", "rtmp connection refused: too many from one address",
			[]any{"address", c.key, "limit", h.opts.ConnsPerIP}
	}
	h.conns[c] = struct{}{}
	if c.tls != nil {
		h.stats.tlsConns.Add(1)
	}
	h.connsBy[c.key]++
	h.connWG.Add(1)
	c.tracked = true
	c.prePublish.Store(true)
	h.stats.prePublish.Add(1)
	return "", "", nil
}

func (h *Hub) connClosed(c *conn) {
	if c.prePublish.CompareAndSwap(true, false) {
		h.stats.prePublish.Add(-1)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if c.tracked {
		delete(h.conns, c)
		if c.tls != nil {
			h.stats.tlsConns.Add(-1)
		}
		if h.connsBy[c.key]--; h.connsBy[c.key] <= 0 {
			delete(h.connsBy, c.key)
		}
		h.connWG.Done()
	}
}

// Shutdown stops accepting, ends every live broadcast (EndShutdown), disconnects
// publishers and waits for consumers to return, or for ctx.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.shutdown = true
	for _, ch := range h.channels {
		if ch.live != nil {
			h.endLocked(ch.live, EndShutdown, "server shutting down")
		}
		if ch.publisher != nil {
			ch.publisher.kick("server shutting down")
			ch.publisher = nil
		}
	}
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	// Closed outside the lock: closing reports back through connClosed, which takes it.
	for _, c := range conns {
		c.Close()
	}

	done := make(chan struct{})
	go func() {
		h.connWG.Wait()
		h.consumerWG.Wait()
		h.events.wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("ingest shutdown: %w", ctx.Err())
	}
	// Consumers must return soon after their context is done.
	h.cancel()
	if err != nil {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	return err
}

// TakeDown ends channel's live broadcast at once (EndTakenDown with reason),
// disconnects its publisher and refuses publishes on it for ban (if positive).
// The ban is kept in Options.Bans too; failing that, it holds in this hub only.
func (h *Hub) TakeDown(channelName, reason string, ban time.Duration) error {
	h.mu.Lock()
	ch, ok := h.channels[channelName]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("take down %q: no such channel", channelName)
	}
	var until time.Time
	if ban > 0 {
		until = time.Now().Add(ban)
		ch.banUntil = until
		ch.banReason = reason
	}
	wasLive := ch.live != nil
	var b *Broadcast
	if ch.live != nil {
		b = ch.live.b
	}
	h.notifyLocked(func(o Observer) {
		if to, ok := o.(TakedownObserver); ok {
			to.TakenDown(channelName, b, reason, ban)
		}
	})
	if ch.live != nil {
		h.endLocked(ch.live, EndTakenDown, reason)
	}
	if ch.publisher != nil {
		ch.publisher.kick("taken down: " + reason)
		ch.publisher = nil
	}
	h.mu.Unlock()
	h.log.Warn("channel taken down", "channel", channelName, "reason", reason, "ban", ban, "was_live", wasLive)
	if ban > 0 && h.opts.Bans != nil {
		ctx, cancel := context.WithTimeout(h.ctx, bansTimeout)
		defer cancel()
		if err := h.opts.Bans.Ban(ctx, channelName, until, reason); err != nil {
			h.log.Error("ban not kept: it holds on this node until it restarts", "channel", channelName, "err", err)
		}
	}
	return nil
}

// Unban lifts a ban set by TakeDown, here and in Options.Bans.
func (h *Hub) Unban(channelName string) error {
	h.mu.Lock()
	ch, ok := h.channels[channelName]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("unban %q: no such channel", channelName)
	}
	ch.banUntil, ch.banReason = time.Time{}, ""
	h.mu.Unlock()
	if h.opts.Bans != nil {
		ctx, cancel := context.WithTimeout(h.ctx, bansTimeout)
		defer cancel()
		if err := h.opts.Bans.Lift(ctx, channelName); err != nil {
			return fmt.Errorf("unban %q: %w", channelName, err)
		}
	}
	h.log.Info("channel unbanned", "channel", channelName)
	return nil
}

// LoadBans brings the bans kept in Options.Bans into every channel the hub
// knows, so that the API shows them before anyone tries to publish.
func (h *Hub) LoadBans(ctx context.Context) {
	h.mu.Lock()
	chans := make([]*channel, 0, len(h.channels))
	for _, ch := range h.channels {
		chans = append(chans, ch)
	}
	h.mu.Unlock()
	for _, ch := range chans {
		h.loadBan(ctx, ch)
	}
}

// loadBan brings the ban kept in Options.Bans (set before a restart, or by
// another node; or lifted by another node) into ch, so that claim sees it:
// the store, when it answers, is what every node agrees on. A store that
// cannot be reached leaves ch as it is: the bans this hub knows still apply.
func (h *Hub) loadBan(ctx context.Context, ch *channel) {
	if h.opts.Bans == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, bansTimeout)
	defer cancel()
	until, reason, err := h.opts.Bans.Banned(ctx, ch.name)
	if err != nil {
		h.refusals.warn("bans_unreachable", "cannot read the channel's ban: only bans set on this node apply", "channel", ch.name, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch.banUntil, ch.banReason = until, reason
}

// authorize decides a publish of key (and an optional channel named by the
// publisher) and returns the channel to publish on. It returns a refusal on failure.
func (h *Hub) authorize(ctx context.Context, app, wantChannel, key, remote string) (*channel, *refusal) {
	if h.opts.AuthWebhook != "" {
		name, err := h.callAuthWebhook(ctx, app, wantChannel, key, remote)
		if err != nil {
			return nil, &refusal{reason: "webhook", code: codeUnauthorized, desc: "publish refused by the auth service", logErr: err,
				badKey: errors.Is(err, errAuthRefused)}
		}
		if name == "" {
			name = wantChannel
		}
		if name == "" {
			name = h.channelForKey(key)
		}
		if !ValidChannelName(name) {
			return nil, &refusal{reason: "webhook", code: codeBadName, desc: "no valid channel for this stream key", logErr: fmt.Errorf("channel %q", name)}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		ch := h.channels[name]
		if ch == nil {
			ch = &channel{name: name, dynamic: true}
			h.channels[name] = ch
		}
		return ch, nil
	}
	name := h.channelForKey(key)
	if name == "" || (wantChannel != "" && wantChannel != name) {
		return nil, &refusal{reason: "bad_key", code: codeUnauthorized, desc: "invalid stream key", badKey: true}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.channels[name], nil
}

// channelForKey finds the channel holding key. Keys are compared by their
// SHA-256, every one of every channel in constant time, so timing tells
// nothing about near misses.
func (h *Hub) channelForKey(key string) string {
	sum := KeyHash(key)
	h.mu.Lock()
	defer h.mu.Unlock()
	found := ""
	for _, ch := range h.channels {
		for _, k := range ch.keys {
			if subtle.ConstantTimeCompare(k[:], sum[:]) == 1 {
				found = ch.name
			}
		}
	}
	return found
}

// claimAcross claims ch in Options.Claims. Claims that cannot be reached
// leave the decision to this node alone: publishing goes on through an outage
// of the shared store, at the risk of one channel live on two nodes.
func (h *Hub) claimAcross(ctx context.Context, ch *channel) *refusal {
	if h.opts.Claims == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, bansTimeout)
	defer cancel()
	err := h.opts.Claims.Claim(ctx, ch.name, h.opts.Takeover)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClaimed):
		return &refusal{reason: "in_use", code: codeBadName, desc: fmt.Sprintf("channel %s is already being published", ch.name), logErr: err}
	default:
		h.refusals.warn("claims_unreachable", "cannot claim the channel across nodes: accepting the publisher on this node's word", "channel", ch.name, "err", err)
		return nil
	}
}

// Kick disconnects channel's publisher. Its broadcast waits out the grace
// period as for a dropped connection, so a publisher whose key still works
// may come back; rotate the key first to keep it out.
func (h *Hub) Kick(channelName, detail string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[channelName]
	switch {
	case ch == nil:
		return fmt.Errorf("kick %q: %w", channelName, ErrNoChannel)
	case ch.publisher == nil:
		return fmt.Errorf("kick %q: %w", channelName, ErrNotPublishing)
	}
	ch.publisher.kick(detail)
	h.log.Info("publisher kicked", "channel", channelName, "remote", ch.publisher.remote, "detail", detail)
	return nil
}

// End ends channel's live broadcast now (EndByAdmin, with detail) and
// disconnects its publisher, without a ban: the next publish starts a new broadcast.
func (h *Hub) End(channelName, detail string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[channelName]
	switch {
	case ch == nil:
		return fmt.Errorf("end %q: %w", channelName, ErrNoChannel)
	case ch.live == nil:
		return fmt.Errorf("end %q: %w", channelName, ErrNotPublishing)
	}
	h.endLocked(ch.live, EndByAdmin, detail)
	if ch.publisher != nil {
		ch.publisher.kick(detail)
		ch.publisher = nil
	}
	return nil
}

// Errors of Kick and End.
var (
	ErrNoChannel     = errors.New("no such channel")
	ErrNotPublishing = errors.New("channel is not live")
)

// Relinquish ends channel's broadcast here because another node publishes it
// now (EndMoved): its publisher, if still connected here, is disconnected.
func (h *Hub) Relinquish(channelName, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[channelName]
	if ch == nil {
		return
	}
	if ch.live != nil {
		h.endLocked(ch.live, EndMoved, detail)
	}
	if ch.publisher != nil {
		ch.publisher.kick(detail)
		ch.publisher = nil
	}
}

// claim makes s the publisher of ch, or says why not.
func (h *Hub) claim(ch *channel, s *session) *refusal {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown {
		return &refusal{reason: "shutdown", code: codeFailed, desc: "server is shutting down"}
	}
	if ch.removed {
		return &refusal{reason: "bad_key", code: codeUnauthorized, desc: "invalid stream key", badKey: true}
	}
	if now := time.Now(); now.Before(ch.banUntil) {
		left := ch.banUntil.Sub(now).Round(time.Second)
		return &refusal{reason: "banned", code: codeUnauthorized,
			desc: fmt.Sprintf("channel %s is banned for another %s: %s", ch.name, left, ch.banReason)}
	}
	if old := ch.publisher; old != nil {
		if !h.opts.Takeover {
			return &refusal{reason: "in_use", code: codeBadName, desc: fmt.Sprintf("channel %s is already being published", ch.name)}
		}
		h.log.Info("publisher taken over", "channel", ch.name, "old", old.remote, "new", s.remote)
		if lb := ch.live; lb != nil && lb.owner.Load() == old {
			h.detachLocked(lb, "taken over by a new publisher")
		}
		old.kick("taken over by a new publisher")
	}
	ch.publisher = s
	return nil
}

// unclaim undoes claim for a publish refused after it (another node
// publishes the channel). Without takeover, claim changed nothing else; with
// it, claimAcross does not refuse.
func (h *Hub) unclaim(ch *channel, s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.publisher == s {
		ch.publisher = nil
	}
}

// release is called when s stops publishing ch. A clean stop ends the broadcast
// at once; a dropped connection leaves it open for the grace period.
func (h *Hub) release(ch *channel, s *session, clean bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.publisher == s {
		ch.publisher = nil
	}
	lb := ch.live
	if lb == nil || lb.owner.Load() != s {
		return
	}
	if clean || h.opts.Grace < 0 {
		h.endLocked(lb, EndStopped, "publisher stopped")
		return
	}
	h.detachLocked(lb, "publisher disconnected")
}

// detachLocked leaves lb without a publisher and starts its grace timer.
func (h *Hub) detachLocked(lb *liveBroadcast, detail string) {
	lb.owner.Store(nil)
	if lb.grace != nil {
		lb.grace.Stop()
	}
	grace := h.opts.Grace
	h.log.Info("publisher gone, waiting for it to return", "channel", lb.b.Channel, "broadcast", lb.b.ID, "grace", grace)
	b := lb.b
	h.notifyLocked(func(o Observer) {
		if po, ok := o.(PublisherObserver); ok {
			po.PublisherLost(b, detail)
		}
	})
	lb.grace = time.AfterFunc(grace, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !lb.ended.Load() && lb.owner.Load() == nil {
			h.endLocked(lb, EndTimeout, fmt.Sprintf("publisher did not return within %s", grace))
		}
	})
}

// begin attaches s, whose tracks are now known, to ch: it continues the
// broadcast in its grace period when the tracks match, or starts a new one.
// It returns the broadcast, where s's timeline starts and whether s resumed
// a broadcast, or nil if s no longer owns ch.
func (h *Hub) begin(ch *channel, s *session, tracks Tracks) (*liveBroadcast, time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.publisher != s || h.shutdown {
		return nil, 0, false
	}
	if lb := ch.live; lb != nil {
		if lb.owner.Load() == nil && tracks.Equal(lb.b.Tracks) {
			if lb.grace != nil {
				lb.grace.Stop()
			}
			lb.owner.Store(s)
			h.log.Info("publisher returned, broadcast continues", "channel", ch.name, "broadcast", lb.b.ID)
			b := lb.b
			h.notifyLocked(func(o Observer) {
				if po, ok := o.(PublisherObserver); ok {
					po.PublisherReturned(b)
				}
			})
			return lb, time.Duration(lb.next.Load()), true
		}
		h.endLocked(lb, EndNewTracks, "publisher returned with different codec parameters")
	}
	b := &Broadcast{ID: newID(), Channel: ch.name, Tracks: tracks, Started: time.Now()}
	lb := &liveBroadcast{b: b, ch: ch}
	lb.owner.Store(s)
	ch.live = lb
	for _, c := range h.consumers {
		f := NewFeed(h.opts.QueueSize, tracks)
		lb.feeds = append(lb.feeds, f)
		h.consumerWG.Add(1)
		go h.runConsumer(c, b, f)
	}
	h.stats.broadcasts.Add(1)
	h.log.Info("broadcast started", "channel", ch.name, "broadcast", b.ID, "tracks", tracks.String())
	h.notifyLocked(func(o Observer) { o.BroadcastStarted(b) })
	return lb, 0, false
}

func (h *Hub) runConsumer(c Consumer, b *Broadcast, f *Feed) {
	defer h.consumerWG.Done()
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("consumer panicked", "channel", b.Channel, "broadcast", b.ID, "consumer", fmt.Sprintf("%T", c), "panic", r)
		}
	}()
	c.Consume(h.ctx, b, f)
}

// endLocked ends lb for reason; its feeds drain and then report ErrEnded.
func (h *Hub) endLocked(lb *liveBroadcast, reason EndReason, detail string) {
	if lb.ended.Swap(true) {
		return
	}
	lb.owner.Store(nil)
	if lb.grace != nil {
		lb.grace.Stop()
	}
	for _, f := range lb.feeds {
		f.End(reason, detail)
		h.stats.dropped.Add(f.Dropped())
	}
	if lb.ch.live == lb {
		lb.ch.live = nil
	}
	h.stats.ended(reason)
	h.log.Info("broadcast ended", "channel", lb.b.Channel, "broadcast", lb.b.ID, "reason", string(reason), "detail", detail,
		"duration", time.Since(lb.b.Started).Round(time.Millisecond))
	b := lb.b
	h.notifyLocked(func(o Observer) { o.BroadcastEnded(b, reason, detail) })
}

// notifyLocked has call made for each observer, in order with every other
// observer call, off the caller's goroutine (see eventQueue). h.mu is held,
// so the order of the calls is the order of what they report.
func (h *Hub) notifyLocked(call func(Observer)) {
	obs := append([]Observer(nil), h.observers...)
	h.events.push(func() {
		for _, o := range obs {
			call(o)
		}
	})
}

// endFromSession ends lb on behalf of its publisher (e.g. a mid-stream codec change).
func (h *Hub) endFromSession(lb *liveBroadcast, reason EndReason, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.endLocked(lb, reason, detail)
}

// ChannelStatus is the public state of one channel, safe to show to viewers.
type ChannelStatus struct {
	Name        string       `json:"name"`
	Live        bool         `json:"live"`
	BroadcastID string       `json:"broadcast_id,omitempty"`
	Video       *VideoStatus `json:"video,omitempty"`
	Audio       *AudioStatus `json:"audio,omitempty"`
	// Bitrate is the publisher's incoming rate in bits/s over the last few seconds.
	Bitrate int64     `json:"bitrate"`
	Since   time.Time `json:"since,omitempty"`
	// PublisherConnected is false while a live broadcast waits out its grace period.
	PublisherConnected bool      `json:"publisher_connected"`
	BannedUntil        time.Time `json:"banned_until,omitempty"`
	BanReason          string    `json:"ban_reason,omitempty"`
}

// VideoStatus describes a live video track.
type VideoStatus struct {
	Codec  Codec `json:"codec"`
	Width  int   `json:"width"`
	Height int   `json:"height"`
}

// AudioStatus describes a live audio track.
type AudioStatus struct {
	Codec      Codec `json:"codec"`
	SampleRate int   `json:"sample_rate"`
	Channels   int   `json:"channels"`
}

// Channels returns the status of every channel, sorted by name.
func (h *Hub) Channels() []ChannelStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ChannelStatus, 0, len(h.channels))
	for _, ch := range h.channels {
		out = append(out, h.statusLocked(ch))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Channel returns the status of one channel.
func (h *Hub) Channel(name string) (ChannelStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.channels[name]
	if !ok {
		return ChannelStatus{}, false
	}
	return h.statusLocked(ch), true
}

func (h *Hub) statusLocked(ch *channel) ChannelStatus {
	st := ChannelStatus{Name: ch.name, PublisherConnected: ch.publisher != nil}
	if time.Now().Before(ch.banUntil) {
		st.BannedUntil, st.BanReason = ch.banUntil, ch.banReason
	}
	if lb := ch.live; lb != nil {
		st.Live = true
		st.BroadcastID = lb.b.ID
		st.Since = lb.b.Started
		if v := lb.b.Tracks.Video; v != nil {
			st.Video = &VideoStatus{Codec: v.Codec, Width: v.Width, Height: v.Height}
		}
		if a := lb.b.Tracks.Audio; a != nil {
			st.Audio = &AudioStatus{Codec: a.Codec, SampleRate: a.SampleRate, Channels: a.Channels}
		}
	}
	if ch.publisher != nil {
		st.Bitrate = ch.meter.rate(time.Now())
	}
	return st
}

// Equal reports whether t and u have the same codecs and codec parameters.
func (t Tracks) Equal(u Tracks) bool {
	switch {
	case (t.Video == nil) != (u.Video == nil), (t.Audio == nil) != (u.Audio == nil):
		return false
	}
	if t.Video != nil {
		a, b := t.Video, u.Video
		if a.Codec != b.Codec || string(a.VPS) != string(b.VPS) || string(a.SPS) != string(b.SPS) || string(a.PPS) != string(b.PPS) {
			return false
		}
	}
	if t.Audio != nil {
		a, b := t.Audio, u.Audio
		if a.Codec != b.Codec || string(a.Config) != string(b.Config) {
			return false
		}
	}
	return true
}

// String describes t for logs, e.g. "h264 1280x720 + aac 48000Hz 2ch".
func (t Tracks) String() string {
	s := ""
	if v := t.Video; v != nil {
		s = fmt.Sprintf("%s %dx%d", v.Codec, v.Width, v.Height)
	}
	if a := t.Audio; a != nil {
		if s != "" {
			s += " + "
		}
		s += fmt.Sprintf("%s %dHz %dch", a.Codec, a.SampleRate, a.Channels)
	}
	return s
}

// keyHash is how a stream key appears in logs: the first 8 hex digits of its SHA-256.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// eventQueue runs observer calls in order on a goroutine of its own, started
// when there is work and gone when there is none, so the RTMP read path never waits.
type eventQueue struct {
	hub     *Hub
	mu      sync.Mutex
	q       []func()
	running bool
	wg      sync.WaitGroup
}

func (e *eventQueue) push(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.q = append(e.q, f)
	if !e.running {
		e.running = true
		e.wg.Add(1)
		go e.run()
	}
}

func (e *eventQueue) run() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			e.mu.Unlock()
			return
		}
		f := e.q[0]
		e.q = e.q[1:]
		e.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					e.hub.log.Error("observer panicked", "panic", r)
				}
			}()
			f()
		}()
	}
}

func (e *eventQueue) wait() { e.wg.Wait() }

// lockedOut refuses a publish from an address locked out after refused keys.
func (h *Hub) lockedOut(key string) *refusal {
	left, locked := h.backoff.locked(key, time.Now())
	if !locked {
		return nil
	}
	return &refusal{reason: "auth_backoff", code: codeUnauthorized,
		desc: fmt.Sprintf("too many refused stream keys from this address: retry in %s", left.Round(time.Second))}
}
