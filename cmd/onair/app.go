package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/bans"
	"github.com/onairhq/onair/catalog"
	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/health"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/certfile"
	"github.com/onairhq/onair/internal/clientip"
	"github.com/onairhq/onair/moderation"
	"github.com/onairhq/onair/purge"
	"github.com/onairhq/onair/recording"
	"github.com/onairhq/onair/segmenter"
	"github.com/onairhq/onair/web"
)

// envLookup reads the process environment; a seam for tests.
var envLookup = os.Getenv

// app holds the running parts of one onair process and wires them together.
type app struct {
	cfg        Config
	log        *slog.Logger
	adminToken string
	hub        *ingest.Hub
	seg        *segmenter.Segmenter
	mod        *moderation.Moderator
	health     *health.Monitor
	chat       *chat.Server
	bus        chat.Bus
	busName    string
	roles      roles
	node       string        // this process among nodes sharing one Redis
	nodeAddr   string        // base URL other nodes reach this node's HTTP at
	rdb        *redis.Client // bans and the channel registry, when redis-url is set
	cluster    *cluster      // nil without redis-url
	thumbnails http.Handler  // the moderation decoder's thumbnails of channels published here
	edges      *purge.Edges  // CDN edges to purge taken-down broadcasts from; nil: none
	web        http.Handler
	rec        *recording.Recorder
	catalog    *catalog.Catalog // channels made through the API
	journal    *journal         // moderation events and takedowns in Redis; nil without redis-url
	channelsMu sync.Mutex
	channels   channelSet           // guarded by channelsMu (channels.go)
	stop       context.CancelFunc   // ends the app's own goroutines
	wg         sync.WaitGroup       // the app's own goroutines
	http       httpStats            // the HTTP server's guards (httpserver.go)
	ready      readiness            // /readyz (readiness.go)
	metrics    *prometheus.Registry // /metrics: every part's collector (metrics.go)

	events *eventsWebhook // events-webhook's deliveries (events.go); nil: none
	certs  *certfile.Pair // RTMPS's certificate, reloaded when its files change; nil: no RTMPS
}

// newApp sets up onair's parts. channels are the configuration's; seed, if
// set, is the generated default channel, put in the catalog the first time.
func newApp(cfg Config, secret, adminToken string, channels []ingest.ChannelConfig, seed *ingest.ChannelConfig, nodeAddr string, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, adminToken: adminToken, node: nodeID(), nodeAddr: nodeAddr}
	a.channels.config = channels
	var err error
	if a.roles, err = parseRoles(cfg.Roles); err != nil {
		return nil, err // validated with the configuration
	}
	if a.roles.has(roleIngest) && cfg.RTMPSAddr != "" {
		if a.certs, err = loadCertificate(cfg, log); err != nil {
			return nil, err
		}
	}

	// Chat.
	a.busName = "memory"
	if cfg.RedisURL != "" {
		a.busName = "redis"
		// go-redis would otherwise log every failed dial during an outage; the bus logs it once.
		redis.SetLogger(chat.QuietRedisLogger{})
		a.bus, err = chat.NewRedisBus(context.Background(), cfg.RedisURL, a.node, log.With("part", "chat-bus"), chat.RedisOptions{RoomTTL: cfg.ChatRoomTTL})
		if err != nil {
			return nil, fmt.Errorf("connect chat bus to redis-url: %w", err)
		}
	} else {
		a.bus = chat.NewMemoryBus(chat.MemoryOptions{RoomTTL: cfg.ChatRoomTTL})
	}
	copts := chatOptions(cfg)
	if cfg.ChatWordFilter != "" {
		if copts.FilterWords, err = readLines(cfg.ChatWordFilter); err != nil {
			return nil, fmt.Errorf("read chat-word-filter: %w", err)
		}
	}
	if cfg.RedisURL == "" {
		// Kept where `onair token revoke` writes them; with Redis, the bus keeps them.
		if copts.Revocations, err = chat.NewFileRevocations(revokedTokensPath(cfg.DataDir)); err != nil {
			return nil, err
		}
	}
	// Rooms exist only for channels the hub knows (configured, or admitted by
	// the webhook) or that another node publishes.
	copts.Known = func(channel string) bool {
		if _, ok := a.hub.Channel(channel); ok {
			return true
		}
		if a.cluster != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, ok, _ := a.cluster.reg.Lookup(ctx, channel)
			return ok
		}
		return false
	}
	copts.Secret = []byte(secret)
	copts.Bus = a.bus
	copts.Logger = log.With("part", "chat")
	if a.chat, err = chat.NewServer(copts); err != nil {
		return nil, fmt.Errorf("set up chat: %w", err)
	}
	a.ready.hls = a.roles.has(roleIngest) || a.roles.has(roleOrigin)
	a.ready.rtmp = a.roles.has(roleIngest)
	a.ready.chatRole = a.roles.has(roleChat)
	a.ready.chat = func() error { // nil while chat's bus reaches the other nodes
		if h := a.chat.Health(); h.State != chat.HealthOK {
			return errors.New(h.Reason)
		}
		return nil
	}

	// Media.
	ropts := recordingOptions(cfg, a.purgeEdges, log.With("part", "recording"))
	ropts.Thumbnail = func(ctx context.Context, channel string) ([]byte, bool) { return a.mod.FreshThumbnail(ctx, channel) }
	if a.rec, err = recording.New(ropts); err != nil {
		return nil, err
	}
	a.seg, err = segmenter.New(segmenter.Options{
		Variant:         cfg.HLSVariant,
		SegmentDuration: cfg.HLSSegmentDuration,
		PartDuration:    cfg.HLSPartDuration,
		SegmentCount:    cfg.HLSSegmentCount,
		EndedLinger:     cfg.HLSEndedLinger,
		// With the moderation gate on, a broadcast is served once its first keyframe passed.
		Visible: func(channel string) bool { return a.mod.Cleared(channel) },
		// A stream the muxer cannot handle is ended and reported, never served mangled.
		OnFailure: func(b *ingest.Broadcast, err error) {
			reason := "the stream could not be packaged: " + err.Error()
			if a.TakeDown(b.Channel, reason, 0) == nil {
				a.mod.Record(moderation.Event{Channel: b.Channel, BroadcastID: b.ID, Action: moderation.Block, Reason: reason, Screener: "packager"})
			}
		},
		OnRemove: a.purgeEdges,
		Record: func(b *ingest.Broadcast, init []byte) segmenter.Sink {
			if w := a.rec.Start(b, init); w != nil {
				return w
			}
			return nil
		},
		Logger: log.With("part", "segmenter"),
	})
	if err != nil {
		return nil, fmt.Errorf("set up HLS segmenter: %w", err)
	}
	if urls := cfg.edgePurgeURLs(); len(urls) > 0 {
		a.edges = purge.New(urls, nil, log.With("part", "purge"))
	}
	// Bans outlive the process: in Redis (every node sees them) or the data directory.
	var channelBans ingest.Bans
	if cfg.RedisURL != "" {
		ropts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("redis-url: %w", err)
		}
		a.rdb = redis.NewClient(ropts)
		channelBans = bans.NewRedis(a.rdb)
		a.journal = &journal{rdb: a.rdb}
		a.cluster = newCluster(a, a.rdb, a.node, a.roles)
		if a.cluster.relay != nil {
			a.ready.registry = a.cluster.reg.Healthy
		}
	} else if channelBans, err = bans.OpenFile(filepath.Join(cfg.DataDir, "bans.json")); err != nil {
		return nil, err
	}
	var claims ingest.Claims // one publisher per channel across nodes
	if a.cluster != nil && a.roles.has(roleIngest) {
		claims = a.cluster.reg
	}
	a.hub, err = ingest.NewHub(ingest.Options{
		App:         cfg.App,
		Channels:    channels,
		Grace:       cfg.Grace,
		Takeover:    cfg.Takeover,
		ConnsPerIP:  cfg.RTMPConnsPerIP,
		AuthWebhook: cfg.PublishWebhook,
		Logger:      log.With("part", "ingest"),

		MaxConns:       cfg.RTMPMaxConns,
		PublishTimeout: cfg.RTMPPublishBy,
		IdleTimeout:    cfg.RTMPIdle,
		AuthFailures:   cfg.RTMPAuthFails,
		AuthBackoffMax: cfg.RTMPAuthMax,
		Bans:           channelBans,
		Claims:         claims,
	})
	if err != nil {
		return nil, fmt.Errorf("set up ingest: %w", err)
	}
	if err := a.openCatalog(seed); err != nil {
		return nil, err
	}
	a.hub.LoadBans(context.Background())
	if a.events, err = newEventsWebhook(cfg, log.With("part", "events")); err != nil {
		return nil, fmt.Errorf("set up events-webhook: %w", err)
	}
	a.mod, err = moderation.New(moderation.Options{
		Interval:          cfg.ModerationInterval,
		Sample:            moderation.SampleMode(cfg.ModerationSample),
		BlocklistPath:     cfg.ModerationBlocklist,
		HashDistance:      cfg.ModerationDistance,
		WebhookURL:        cfg.ModerationWebhook,
		WebhookSecret:     cfg.ModerationSecret,
		ScreenTimeout:     cfg.ModerationTimeout,
		Gate:              cfg.ModerationGate,
		FailurePolicy:     moderation.FailurePolicy(cfg.ModerationFailure),
		FailureAfter:      cfg.ModerationFailAfter,
		DefaultBan:        cfg.ModerationBan,
		FFmpegPath:        cfg.FFmpegPath,
		ThumbnailInterval: cfg.ModerationThumbs,
		MaxBan:            cfg.ModerationMaxBan,
		HistoryPath:       filepath.Join(cfg.DataDir, "moderation-events.jsonl"),
		Decoders:          cfg.ModerationDecoders,
		DecodeQueue:       cfg.ModerationQueue,
		DecoderIdle:       cfg.ModerationIdle,
		Enforcer:          a,
		OnRecord:          a.journalEvent,
		OnFlag:            a.events.flagged,
		Logger:            log.With("part", "moderation"),
	})
	if err != nil {
		return nil, fmt.Errorf("set up moderation: %w", err)
	}
	if err := a.mod.Check(); err != nil {
		log.Warn("keyframe screening is unavailable; the moderation failure policy applies", "err", err, "policy", cfg.ModerationFailure)
	}
	a.thumbnails = a.mod.ThumbnailHandler()
	a.hub.AddConsumer(a.seg)
	a.hub.AddConsumer(a.mod)
	a.health = health.New(health.Options{SegmentDuration: cfg.HLSSegmentDuration, Logger: log.With("part", "health")})
	a.hub.AddConsumer(a.health)
	a.hub.AddObserver(broadcastNotices{a.chat})
	if a.cluster != nil {
		a.hub.AddObserver(a.cluster)
	}
	if a.events != nil {
		a.hub.AddObserver(a.events)
	}

	a.web = web.New(web.Options{Logger: log.With("part", "web")})
	a.metrics = a.newRegistry()
	return a, nil
}

// TakeDown is onair's one way to end a broadcast for cause, whoever asks
// (moderation, the admin API, a stream the segmenter cannot package): the hub
// ends it and refuses the channel for ban, its HLS goes at once (and from the
// CDN edges, see purgeEdges), and its chat room is told why. It implements
// moderation.Enforcer.
func (a *app) TakeDown(channel, reason string, ban time.Duration) error {
	if err := a.hub.TakeDown(channel, reason, ban); err != nil {
		return err
	}
	a.seg.Remove(channel)
	a.chat.Announce(channel, chat.SystemTakenDown, channel+" was taken down", reason)
	return nil
}

// purgeEdges has the CDN edges drop what they hold of a removed channel's
// window, so that a taken-down broadcast is gone from them at once.
func (a *app) purgeEdges(channel string, paths []string) {
	if a.edges == nil || len(paths) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	res := a.edges.Purge(ctx, paths)
	a.log.Info("taken-down broadcast purged from the edges", "channel", channel,
		"objects", len(paths), "purged", res.Purged, "failed", res.Failed, "took", time.Since(start).Round(time.Millisecond))
}

// journalEvent keeps a moderation event or takedown in Redis, where every node lists it.
func (a *app) journalEvent(ev moderation.Event) {
	if a.journal == nil {
		return
	}
	if err := a.journal.add(ev); err != nil {
		a.log.Warn("moderation event kept on this node only", "channel", ev.Channel, "err", err)
	}
}

// catalogFile keeps the channels made through the API, without Redis.
const catalogFile = "channels.json"

// openCatalog reads the channels made through the API (seeding the default
// channel the first time) and, with Redis, follows other nodes' changes.
func (a *app) openCatalog(seed *ingest.ChannelConfig) error {
	var store catalog.Store
	var rs *catalog.RedisStore
	if a.rdb != nil {
		rs = catalog.NewRedisStore(a.rdb)
		store = rs
	} else {
		store = catalog.NewFileStore(filepath.Join(a.cfg.DataDir, catalogFile))
	}
	a.catalog = &catalog.Catalog{Store: store}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if seed != nil {
		ch := catalog.Channel{Name: seed.Name, Title: seed.Name, Created: time.Now().UTC()}
		for _, k := range seed.Keys {
			ch.Keys = append(ch.Keys, a.catalog.KeyEntry(k))
		}
		if err := store.Seed(ctx, ch); err != nil {
			// Served all the same, as if configured, until a start that can save it.
			a.log.Error("cannot save the default channel among the API's channels; serving it from the configuration", "channel", seed.Name, "err", err)
			a.channels.config = append(a.channels.config, *seed)
		}
	}
	if err := a.applyChannels(ctx); err != nil {
		if rs == nil {
			return fmt.Errorf("read the channels made through the API: %w", err)
		}
		a.log.Error("cannot read the channels made through the API from Redis; they apply once it answers", "err", err)
		if err := a.hub.SetChannels(a.channels.config); err != nil {
			return err
		}
	}
	if rs != nil {
		var wctx context.Context
		wctx, a.stop = context.WithCancel(context.Background())
		a.wg.Go(func() { a.watchCatalog(wctx, rs) })
	}
	return nil
}

func (a *app) close() {
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
	a.mod.Close()
	a.seg.Close()
	a.rec.Close() // after the segmenter: every recording has its end
	a.events.close()
	if c, ok := a.bus.(interface{ Close() error }); ok {
		c.Close()
	}
	if a.rdb != nil {
		a.rdb.Close()
	}
}

// routes is onair's HTTP surface.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	if a.roles.has(roleIngest) || a.roles.has(roleOrigin) {
		h := hlsHandler{local: a.seg.Handler(), serves: a.seg.Serves, ready: a.seg.Ready,
			// Names no node can publish are answered here, without asking Redis.
			known: func(channel string) bool {
				_, ok := a.hub.Channel(channel)
				return ok || a.cfg.PublishWebhook != ""
			}}
		if a.cluster != nil {
			h.relay = a.cluster.relay
		}
		mux.Handle("/hls/", h)
		mux.Handle("/vod/", a.rec.Handler())
	}
	if a.roles.has(roleChat) {
		mux.Handle("/chat/", a.chat)
	}
	if a.roles.has(roleWeb) {
		mux.Handle("/api/v1/", a.api())
		mux.Handle("/", a.web)
	} else {
		mux.Handle("/", http.NotFoundHandler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", &a.ready)
	mux.Handle("GET /metrics", a.metricsHandler(a.metrics))
	return mux
}

// broadcastNotices posts a channel's broadcast events into its chat room.
type broadcastNotices struct{ chat *chat.Server }

func (n broadcastNotices) BroadcastStarted(b *ingest.Broadcast) {
	n.chat.Announce(b.Channel, chat.SystemLive, b.Channel+" is live", "")
}

func (n broadcastNotices) BroadcastEnded(b *ingest.Broadcast, reason ingest.EndReason, detail string) {
	if reason == ingest.EndTakenDown {
		return // the takedown itself announced it, with the reason
	}
	n.chat.Announce(b.Channel, chat.SystemOffline, b.Channel+" went offline", string(reason))
}

// chatOptions maps the chat settings onto chat.Options (the word filter's file is read later).
func chatOptions(cfg Config) chat.Options {
	o := chat.DefaultOptions()
	o.HistoryLen = cfg.ChatHistory
	o.MaxMessageLen = cfg.ChatMaxMessage
	o.ConnMessages, o.ConnWindow = cfg.ChatRateMessages, cfg.ChatRateWindow
	o.IPMessages, o.IPWindow = cfg.ChatIPRateMessages, cfg.ChatRateWindow
	o.ConnsPerIP = cfg.ChatConnsPerIP
	o.UpgradesPerMinute = cfg.ChatUpgradesPerIP
	o.RoomTTL = cfg.ChatRoomTTL
	o.FilterMode = chat.FilterMode(cfg.ChatWordFilterMode)
	o.TrustedProxies, _ = clientip.ParseNetworks(cfg.TrustedProxies) // validated with the config
	for _, item := range cfg.ChatAllowedOrigins {
		for _, origin := range strings.Split(item, ",") {
			if origin = strings.TrimSpace(origin); origin != "" {
				o.AllowedOrigins = append(o.AllowedOrigins, origin)
			}
		}
	}
	if len(o.AllowedOrigins) == 0 && cfg.PublicURL != "" {
		o.AllowedOrigins = []string{chat.OriginOf(cfg.PublicURL)}
	}
	return o
}

// chatOptionErrors checks the chat settings with chat's own rules, naming each setting.
func chatOptionErrors(cfg Config) []error {
	err := chatOptions(cfg).Validate()
	if err == nil {
		return nil
	}
	setting := map[string]string{
		"HistoryLen": "chat-history", "MaxMessageLen": "chat-max-message", "ConnMessages": "chat-rate-messages",
		"IPMessages": "chat-ip-rate-messages", "ConnWindow": "chat-rate-window", "IPWindow": "chat-rate-window",
		"ConnsPerIP": "chat-conns-per-ip", "UpgradesPerMinute": "chat-upgrades-per-ip", "RoomTTL": "chat-room-ttl",
		"FilterMode": "chat-word-filter-mode", "AllowedOrigins": "chat-allowed-origins",
	}
	var out []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var oe *chat.OptionError
		if errors.As(e, &oe) && setting[oe.Field] != "" {
			out = append(out, fmt.Errorf("invalid setting %s: %s", setting[oe.Field], oe.Problem))
		} else {
			out = append(out, e)
		}
	}
	return out
}

// revokedTokensPath is where revoked moderator tokens are kept without Redis.
func revokedTokensPath(dataDir string) string { return filepath.Join(dataDir, "revoked-tokens") }

// nodeID names this process among chat nodes sharing one Redis.
func nodeID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomToken(4))
}

func readLines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}
