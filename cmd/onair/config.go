package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/onairhq/onair/events"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/clientip"
	"github.com/onairhq/onair/moderation"
	"github.com/onairhq/onair/recording"
	"github.com/onairhq/onair/segmenter"
)

// Config is every setting of `onair serve`. Each field tagged `key` is settable, in
// rising precedence, by its default, the YAML file (same key), the environment
// (ONAIR_ + key upper-cased, dashes as underscores) and the flag (--key).
type Config struct {
	ConfigFile string `key:"config" help:"YAML configuration file"`

	RTMPAddr       string        `key:"rtmp-addr" help:"RTMP listen address for publishers"`
	RTMPSAddr      string        `key:"rtmps-addr" help:"RTMPS (RTMP over TLS) listen address for publishers, beside rtmp-addr, e.g. :1936 or :443 (empty: off); needs tls-cert and tls-key"`
	TLSCert        string        `key:"tls-cert" help:"PEM certificate file (the full chain) that RTMPS presents; reloaded when it changes"`
	TLSKey         string        `key:"tls-key" help:"PEM private key file of tls-cert; reloaded when it changes"`
	HTTPAddr       string        `key:"http-addr" help:"HTTP listen address (HLS, chat, API, watch pages)"`
	PublicURL      string        `key:"public-url" help:"base URL viewers use to reach this server (printed URLs); default http://<host>:<http port>"`
	DataDir        string        `key:"data-dir" help:"directory for state kept across restarts (generated keys, secret)"`
	LogLevel       string        `key:"log-level" help:"debug, info, warn or error"`
	LogFormat      string        `key:"log-format" help:"text or json"`
	GCPercent      int           `key:"gc-percent" help:"Go garbage collector target: heap growth over live data, in percent, before a collection (0: leave it to GOGC); lower trades a little CPU for memory"`
	MemoryLimitMiB int           `key:"memory-limit-mib" help:"soft limit of the process's Go memory in MiB; the collector works harder near it (0: none; GOMEMLIMIT also works)"`
	Roles          string        `key:"roles" help:"what this node does, comma-separated: ingest (RTMP publishers, packaging, moderation), origin (HLS of every live channel, fetched from the node holding it), chat (WebSocket rooms), web (pages and API); default all"`
	NodeAddr       string        `key:"node-addr" help:"base URL other nodes reach this node's HTTP at, for the HLS of channels published here (with redis-url; default http://<first non-loopback address>:<http port>)"`
	RegistryTTL    time.Duration `key:"registry-ttl" help:"with redis-url, how long a node's claim on a live channel outlives its last heartbeat: a node that dies loses its channels after this"`
	DebugAddr      string        `key:"debug-addr" help:"listen address for Go's net/http/pprof profiling endpoints (empty: off; never expose it publicly)"`

	HTTPHeaderTimeout  time.Duration `key:"http-header-timeout" help:"time a client has to send a request's headers"`
	HTTPReadTimeout    time.Duration `key:"http-read-timeout" help:"time a client has to send a whole request, headers and body"`
	HTTPWriteTimeout   time.Duration `key:"http-write-timeout" help:"time to answer one request, from its headers to the last byte sent: a blocking playlist wait plus a slow player's segment download (WebSocket chat is exempt)"`
	HTTPIdleTimeout    time.Duration `key:"http-idle-timeout" help:"how long an idle keep-alive connection is kept open"`
	HTTPMaxHeaderBytes int           `key:"http-max-header-bytes" help:"largest request header block, in bytes; larger requests are answered 431"`
	HTTPMaxConns       int           `key:"http-max-conns" help:"simultaneous HTTP connections, WebSocket chat included; more are answered 503 and closed"`
	ShutdownDrain      time.Duration `key:"shutdown-drain" help:"on SIGTERM, how long HTTP keeps answering after broadcasts ended and chat closed, so players read the playlists' end and load balancers see /readyz fail (at most 8s: onair exits within 10s)"`

	Channels       []string      `key:"channel" help:"a channel as NAME:KEY (repeatable; a name may repeat to add keys)"`
	App            string        `key:"rtmp-app" help:"RTMP application name publishers use"`
	Grace          time.Duration `key:"reconnect-grace" help:"how long a dropped publisher may take to reconnect and continue the same playlist"`
	RTMPConnsPerIP int           `key:"rtmp-conns-per-ip" help:"simultaneous RTMP connections allowed from one IP address, an IPv6 address counting with its /64 (negative: no limit)"`
	RTMPMaxConns   int           `key:"rtmp-max-conns" help:"simultaneous RTMP connections allowed in all, publishing or not (negative: no limit)"`
	RTMPPublishBy  time.Duration `key:"rtmp-publish-timeout" help:"how long an RTMP connection may take from accept to a successful publish, however it trickles its bytes"`
	RTMPIdle       time.Duration `key:"rtmp-idle-timeout" help:"how long a publisher may send nothing before it is dropped (its broadcast then waits out reconnect-grace)"`
	RTMPAuthFails  int           `key:"rtmp-auth-failures" help:"refused stream keys one address (IPv4, or IPv6 /64) may send before each further one locks it out, 1 s doubling up to rtmp-auth-backoff-max (negative: never)"`
	RTMPAuthMax    time.Duration `key:"rtmp-auth-backoff-max" help:"longest lockout of an address after refused stream keys"`
	Takeover       bool          `key:"takeover" help:"let a second publisher take a live channel over instead of refusing it"`
	PublishWebhook string        `key:"publish-auth-webhook" help:"URL deciding publishes instead of the key list (POST JSON, 2xx accepts)"`

	HLSVariant         string        `key:"hls-variant" help:"lowlatency, fmp4 or mpegts"`
	HLSSegmentDuration time.Duration `key:"hls-segment-duration" help:"segment length aimed at (cut at keyframes; EXT-X-TARGETDURATION is this rounded up to whole seconds)"`
	HLSPartDuration    time.Duration `key:"hls-part-duration" help:"LL-HLS part length (200ms is a whole number of frames at 15, 25, 30, 50 and 60 fps); PART-TARGET is a millisecond more, for RTMP's millisecond timestamps, or, where whole frames cannot fill 85 % of that, the nearest whole number of frames (209ms at 24 fps)"`
	HLSSegmentCount    int           `key:"hls-segment-count" help:"segments kept in each playlist"`
	HLSEndedLinger     time.Duration `key:"hls-ended-linger" help:"how long an ended playlist stays served before answering 404"`

	AdminToken string `key:"admin-token" help:"bearer token for admin API actions (not a chat moderator token); default generated in the data directory"`
	Secret     string `key:"secret" help:"secret signing moderator tokens; default generated in the data directory"`

	RedisURL           string        `key:"redis-url" help:"Redis URL for multi-node chat (empty: in-memory)"`
	ChatHistory        int           `key:"chat-history" help:"messages a viewer receives on join"`
	ChatMaxMessage     int           `key:"chat-max-message" help:"longest chat message, in characters"`
	ChatRateMessages   int           `key:"chat-rate-messages" help:"messages allowed per connection per window"`
	ChatIPRateMessages int           `key:"chat-ip-rate-messages" help:"messages allowed per IP address per window"`
	ChatRateWindow     time.Duration `key:"chat-rate-window" help:"the window of the chat rate limits"`
	ChatConnsPerIP     int           `key:"chat-conns-per-ip" help:"WebSocket connections allowed per IP address"`
	ChatWordFilter     string        `key:"chat-word-filter" help:"file of filtered words, one per line"`
	ChatWordFilterMode string        `key:"chat-word-filter-mode" help:"mask or refuse"`
	ChatAllowedOrigins []string      `key:"chat-allowed-origins" help:"browser origins (scheme://host[:port]) whose pages may open chat, besides pages of the host itself; * allows any (default: public-url's origin)"`
	ChatRoomTTL        time.Duration `key:"chat-room-ttl" help:"how long a chat room nobody is in keeps its history (in memory or Redis) before it is forgotten"`
	ChatUpgradesPerIP  int           `key:"chat-upgrades-per-ip" help:"chat connection attempts (WebSocket handshakes) allowed per IP address per minute"`
	ChatTrustProxy     bool          `key:"chat-trust-proxy" help:"removed: it believed any X-Forwarded-For; list your proxies in trusted-proxies instead"`

	TrustedProxies []string `key:"trusted-proxies" help:"networks of the reverse proxies in front of onair (CIDR or address, comma-separated); only their X-Forwarded-For hops are believed, read from the right"`

	ModerationInterval  time.Duration `key:"moderation-interval" help:"how often a frame of each live channel is screened (media time)"`
	ModerationSample    string        `key:"moderation-sample" help:"which frames are screened: any (keyframes and frames between them, at random points) or keyframes (cheapest, and dodged by a stream that shows something harmless on its keyframes)"`
	ModerationWebhook   string        `key:"moderation-webhook" help:"URL of the screening webhook"`
	ModerationSecret    string        `key:"moderation-webhook-secret" help:"shared secret for the webhook's HMAC signature"`
	ModerationBlocklist string        `key:"moderation-blocklist" help:"file of blocked perceptual hashes (hex, one per line)"`
	ModerationDistance  int           `key:"moderation-hash-distance" help:"Hamming distance within which a hash matches the blocklist"`
	ModerationGate      bool          `key:"moderation-gate" help:"serve a new broadcast only after its first keyframe passed screening"`
	ModerationFailure   string        `key:"moderation-failure-policy" help:"open (keep streaming) or closed (take down) when screening keeps failing"`
	ModerationFailAfter time.Duration `key:"moderation-failure-after" help:"how long screening may fail before the failure policy applies"`
	ModerationTimeout   time.Duration `key:"moderation-timeout" help:"time limit of each screener"`
	ModerationBan       time.Duration `key:"moderation-ban" help:"how long a blocked channel may not publish, unless the verdict says"`
	ModerationThumbs    time.Duration `key:"moderation-thumbnail-interval" help:"without screeners, how old a thumbnail may get before a request decodes a newer keyframe"`
	ModerationMaxBan    time.Duration `key:"moderation-max-ban" help:"longest republish ban a screening verdict may ask for; longer ones are cut to it"`
	ModerationDecoders  int           `key:"moderation-decoders" help:"decoder workers shared by all channels, and so the most ffmpeg processes at once (0: one per CPU Go uses)"`
	ModerationQueue     int           `key:"moderation-decode-queue" help:"keyframes that may wait for a decoder; one more is dropped and counts as a screening failure"`
	EdgePurge           string        `key:"edge-purge" help:"base URLs of CDN edges (deploy/nginx's template) to purge a taken-down broadcast from, comma-separated, e.g. http://edge:80; a name is every address it resolves to"`
	ModerationIdle      time.Duration `key:"moderation-decoder-idle" help:"how long an unused ffmpeg decoder process is kept before it is stopped"`
	FFmpegPath          string        `key:"ffmpeg" help:"ffmpeg binary used to decode keyframes for screening and thumbnails"`

	EventsWebhook  string        `key:"events-webhook" help:"URL receiving onair's events (publish started and stopped, publisher reconnecting and returned, taken down, moderation flag) as signed JSON POSTs, in order, retried until taken (docs/events.md)"`
	EventsSecret   string        `key:"events-webhook-secret" help:"shared secret for the events webhook's HMAC signature (required with events-webhook)"`
	EventsQueue    int           `key:"events-queue" help:"events kept in memory while the events webhook is slow or down; beyond that the oldest are dropped (counted)"`
	Record         string        `key:"record" help:"record broadcasts into DATA-DIR/recordings for replays: all, or comma-separated channel names; empty: off (needs the lowlatency or fmp4 hls-variant)"`
	RecordMaxAge   time.Duration `key:"record-max-age" help:"recordings older than this are removed (0: kept until record-max-mb removes them)"`
	RecordMaxMB    int           `key:"record-max-mb" help:"most MiB of recordings kept per channel; the oldest are removed first, never the one being recorded (0: no limit)"`
	RecordTakedown string        `key:"record-takedown" help:"what a taken-down broadcast's recording becomes: hide (kept for review, never served) or delete"`
	EventsRetryMax time.Duration `key:"events-retry-max" help:"longest wait between two attempts to deliver an event the events webhook did not take (the wait starts at 1s and doubles)"`
}

func defaultConfig() Config {
	mod := moderation.DefaultOptions()
	return Config{
		RTMPAddr:    ":1935",
		HTTPAddr:    ":8080",
		DataDir:     "onair-data",
		LogLevel:    "info",
		LogFormat:   "text",
		GCPercent:   10,
		Roles:       "ingest,origin,chat,web",
		RegistryTTL: 5 * time.Second,
		App:         "live",
		Grace:       15 * time.Second,

		RTMPConnsPerIP: ingest.DefaultConnsPerIP,
		RTMPMaxConns:   ingest.DefaultMaxConns,
		RTMPPublishBy:  ingest.DefaultPublishTimeout,
		RTMPIdle:       ingest.DefaultIdleTimeout,
		RTMPAuthFails:  ingest.DefaultAuthFailures,
		RTMPAuthMax:    ingest.DefaultAuthBackoffMax,

		HTTPHeaderTimeout:  defaultHTTPHeaderTimeout,
		HTTPReadTimeout:    defaultHTTPReadTimeout,
		HTTPWriteTimeout:   defaultHTTPWriteTimeout,
		HTTPIdleTimeout:    defaultHTTPIdleTimeout,
		HTTPMaxHeaderBytes: defaultHTTPMaxHeaderBytes,
		HTTPMaxConns:       defaultHTTPMaxConns,
		ShutdownDrain:      defaultShutdownDrain,

		HLSVariant:         "lowlatency",
		HLSSegmentDuration: time.Second,
		HLSPartDuration:    200 * time.Millisecond,
		HLSSegmentCount:    7,
		HLSEndedLinger:     30 * time.Second,

		ChatHistory:        50,
		ChatMaxMessage:     500,
		ChatRateMessages:   5,
		ChatIPRateMessages: 10,
		ChatRateWindow:     5 * time.Second,
		ChatConnsPerIP:     20,
		ChatWordFilterMode: "mask",
		ChatRoomTTL:        10 * time.Minute,
		ChatUpgradesPerIP:  60,

		ModerationInterval:  2 * time.Second,
		ModerationSample:    string(mod.Sample),
		ModerationDistance:  10,
		ModerationGate:      true,
		ModerationFailure:   "open",
		ModerationFailAfter: 10 * time.Second,
		ModerationTimeout:   5 * time.Second,
		ModerationBan:       10 * time.Minute,
		ModerationThumbs:    10 * time.Second,
		ModerationMaxBan:    mod.MaxBan,
		ModerationQueue:     mod.DecodeQueue,
		ModerationIdle:      mod.DecoderIdle,

		EventsQueue:    events.DefaultQueueSize,
		RecordTakedown: recording.TakedownHide,
		EventsRetryMax: events.DefaultBackoffMax,
		FFmpegPath:     "ffmpeg",
	}
}

// configField is one settable key of Config.
type configField struct {
	key, help string
	v         reflect.Value
}

func (c *Config) fields() []configField {
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	var out []configField
	for i := range rt.NumField() {
		f := rt.Field(i)
		if k := f.Tag.Get("key"); k != "" {
			out = append(out, configField{key: k, help: f.Tag.Get("help"), v: rv.Field(i)})
		}
	}
	return out
}

func envName(key string) string {
	return "ONAIR_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// set parses s into the field. Lists append, so a flag may repeat.
func (f configField) set(s string) error {
	switch p := f.v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *[]string:
		*p = append(*p, s)
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 2s or 500ms, got %q", s)
		}
		*p = d
	default:
		return fmt.Errorf("unsupported setting type %s", f.v.Type())
	}
	return nil
}

// flagValue adapts a configField to flag.Value. Flags are recorded first and
// applied last, so they win over the file and the environment.
type flagValue struct {
	f   configField
	got *[]flagSetting
}

type flagSetting struct {
	f   configField
	raw string
}

func (fv flagValue) String() string { return "" }
func (fv flagValue) Set(s string) error {
	*fv.got = append(*fv.got, flagSetting{fv.f, s})
	// Validate now, so the flag package reports the bad flag by name.
	return configField{v: reflect.New(fv.f.v.Type()).Elem()}.set(s)
}
func (fv flagValue) IsBoolFlag() bool { return fv.f.v.Kind() == reflect.Bool }

// loadConfig builds the configuration from defaults, file, environment and args.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	var flags []flagSetting
	for _, f := range cfg.fields() {
		help := f.help + " (env " + envName(f.key) + ")"
		if !f.v.IsZero() && f.v.Kind() != reflect.Slice {
			help += fmt.Sprintf(" (default %v)", f.v.Interface())
		}
		fs.Var(flagValue{f: f, got: &flags}, f.key, help)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	// The config file's name may itself come from the environment or a flag.
	file := getenv(envName("config"))
	for _, fl := range flags {
		if fl.f.key == "config" {
			file = fl.raw
		}
	}
	if file != "" {
		if err := cfg.loadFile(file); err != nil {
			return cfg, err
		}
	}
	for _, f := range cfg.fields() {
		s := getenv(envName(f.key))
		if s == "" || f.key == "config" {
			continue
		}
		items := []string{s}
		if f.v.Kind() == reflect.Slice {
			f.v.Set(reflect.Zero(f.v.Type()))
			items = strings.Split(s, ",")
		}
		for _, it := range items {
			if err := f.set(strings.TrimSpace(it)); err != nil {
				return cfg, fmt.Errorf("invalid setting %s (environment %s): %w", f.key, envName(f.key), err)
			}
		}
	}
	// A list given by flags replaces what the file or environment gave.
	for _, fl := range flags {
		if fl.f.v.Kind() == reflect.Slice {
			fl.f.v.Set(reflect.Zero(fl.f.v.Type()))
		}
	}
	for _, fl := range flags {
		if err := fl.f.set(fl.raw); err != nil {
			return cfg, fmt.Errorf("invalid setting %s: %w", fl.f.key, err)
		}
	}
	return cfg, cfg.validate()
}

func (c *Config) loadFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	return c.loadYAML(raw, path)
}

// loadYAML applies a config file's contents; path names it in errors.
func (c *Config) loadYAML(raw []byte, path string) error {
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := map[string]configField{}
	for _, f := range c.fields() {
		byKey[f.key] = f
	}
	// The file may say "channels" for the repeatable --channel.
	if n, ok := doc["channels"]; ok {
		doc["channel"] = n
		delete(doc, "channels")
	}
	// Every key is looked at, so that one run names every mistake.
	keys := make([]string, 0, len(doc))
	for key := range doc {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	var errs []error
	for _, key := range keys {
		node := doc[key]
		f, ok := byKey[key]
		if !ok || key == "config" {
			msg := fmt.Sprintf("config file %s: unknown key %q", path, key)
			if near := nearestKey(key, byKey); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		if f.v.Kind() == reflect.Slice {
			var items []string
			if node.Kind == yaml.ScalarNode {
				items = []string{node.Value} // "a, b" is split by the setting that needs it
			} else if err := node.Decode(&items); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: key %q: want a list of strings", path, key))
				continue
			}
			for _, it := range items {
				if err := f.set(it); err != nil {
					errs = append(errs, fmt.Errorf("invalid setting %s in config file %s: %w", key, path, err))
				}
			}
			continue
		}
		if node.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("config file %s: key %q: want a single value", path, key))
			continue
		}
		if err := f.set(node.Value); err != nil {
			errs = append(errs, fmt.Errorf("invalid setting %s in config file %s: %w", key, path, err))
		}
	}
	return errors.Join(errs...)
}

// nearestKey returns the setting whose name is closest to key (a typo, or
// a flag's spelling with underscores), or "" when none is close.
func nearestKey(key string, byKey map[string]configField) string {
	key = strings.ReplaceAll(strings.ToLower(key), "_", "-")
	best, bestD := "", 3 // more than two edits away is no suggestion
	for k := range byKey {
		if k == "config" {
			continue
		}
		if d := editDistance(key, k); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	if bestD >= 3 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// channelKeys parses the --channel list into name → keys, in first-seen order.
func (c *Config) channelKeys() ([]string, map[string][]string, error) {
	var order []string
	keys := map[string][]string{}
	for _, s := range c.Channels {
		name, key, ok := strings.Cut(s, ":")
		if !ok || !ingest.ValidChannelName(name) || len(key) < 8 {
			return nil, nil, fmt.Errorf("invalid setting channel %q: want NAME:KEY, NAME matching [a-z0-9_-]{1,64} and a KEY of at least 8 characters", redactChannel(s))
		}
		if _, seen := keys[name]; !seen {
			order = append(order, name)
		}
		keys[name] = append(keys[name], key)
	}
	return order, keys, nil
}

// redactChannel hides the key part of a NAME:KEY setting for error messages.
func redactChannel(s string) string {
	if name, _, ok := strings.Cut(s, ":"); ok {
		return name + ":…"
	}
	return s
}

// edgePurgeURLs splits edge-purge.
func (c *Config) edgePurgeURLs() []string {
	var out []string
	for _, u := range strings.Split(c.EdgePurge, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("invalid setting %s: %s", key, fmt.Sprintf(format, a...)))
	}
	for key, v := range map[string]string{"hls-variant": c.HLSVariant, "log-level": c.LogLevel, "log-format": c.LogFormat,
		"chat-word-filter-mode": c.ChatWordFilterMode, "moderation-failure-policy": c.ModerationFailure,
		"moderation-sample": c.ModerationSample} {
		allowed := map[string][]string{
			"hls-variant":               {"lowlatency", "fmp4", "mpegts"},
			"log-level":                 {"debug", "info", "warn", "error"},
			"log-format":                {"text", "json"},
			"chat-word-filter-mode":     {"mask", "refuse"},
			"moderation-failure-policy": {"open", "closed"},
			"moderation-sample":         {"any", "keyframes"},
		}[key]
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	if c.HLSSegmentDuration <= 0 {
		bad("hls-segment-duration", "must be positive")
	}
	if c.HLSPartDuration <= 0 || c.HLSPartDuration > c.HLSSegmentDuration {
		bad("hls-part-duration", "must be positive and at most hls-segment-duration")
	}
	if c.GCPercent < 0 {
		bad("gc-percent", "must not be negative")
	}
	if c.MemoryLimitMiB < 0 {
		bad("memory-limit-mib", "must not be negative")
	}
	if c.HLSSegmentCount < 3 {
		bad("hls-segment-count", "must be at least 3 (players need three segments)")
	}
	if c.Grace < 0 {
		bad("reconnect-grace", "must not be negative")
	}
	c.validateTLS(bad)
	if _, err := parseRoles(c.Roles); err != nil {
		bad("roles", "%v", err)
	}
	if c.Record != "" {
		for _, n := range strings.Split(c.Record, ",") {
			if n = strings.TrimSpace(n); n != "all" && !ingest.ValidChannelName(n) {
				bad("record", "%q is neither all nor a channel name", n)
			}
		}
		if c.HLSVariant == segmenter.VariantMPEGTS {
			bad("record", "recordings are fMP4: set hls-variant to lowlatency or fmp4")
		}
	}
	if c.RecordMaxAge < 0 {
		bad("record-max-age", "must not be negative")
	}
	if c.RecordMaxMB < 0 {
		bad("record-max-mb", "must not be negative")
	}
	if c.RecordTakedown != recording.TakedownHide && c.RecordTakedown != recording.TakedownDelete {
		bad("record-takedown", "must be hide or delete, got %q", c.RecordTakedown)
	}
	if c.RegistryTTL < time.Second || c.RegistryTTL > time.Minute {
		bad("registry-ttl", "must be between 1s and 1m")
	}
	for key, n := range map[string]int{"rtmp-conns-per-ip": c.RTMPConnsPerIP, "rtmp-max-conns": c.RTMPMaxConns, "rtmp-auth-failures": c.RTMPAuthFails} {
		if n == 0 {
			bad(key, "must not be 0 (a negative value lifts the limit)")
		}
	}
	for key, d := range map[string]time.Duration{"rtmp-publish-timeout": c.RTMPPublishBy, "rtmp-idle-timeout": c.RTMPIdle, "rtmp-auth-backoff-max": c.RTMPAuthMax} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	if c.ModerationInterval <= 0 {
		bad("moderation-interval", "must be positive")
	}
	if c.ModerationMaxBan <= 0 || c.ModerationMaxBan < c.ModerationBan {
		bad("moderation-max-ban", "must be positive and at least moderation-ban")
	}
	if c.ModerationDecoders < 0 {
		bad("moderation-decoders", "must not be negative")
	}
	if c.ModerationQueue < 1 {
		bad("moderation-decode-queue", "must be at least 1")
	}
	if c.ModerationIdle <= 0 {
		bad("moderation-decoder-idle", "must be positive")
	}
	c.validateEvents(bad)
	for key, u := range map[string]string{"publish-auth-webhook": c.PublishWebhook, "moderation-webhook": c.ModerationWebhook,
		"events-webhook": c.EventsWebhook, "public-url": c.PublicURL, "node-addr": c.NodeAddr} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(key, "%q is not an http(s) URL", u)
		}
	}
	for _, u := range c.edgePurgeURLs() {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || (p.Path != "" && p.Path != "/") {
			bad("edge-purge", "%q is not an http(s) base URL (scheme and host only)", u)
		}
	}
	if c.RedisURL != "" {
		if p, err := url.Parse(c.RedisURL); err != nil || (p.Scheme != "redis" && p.Scheme != "rediss") {
			bad("redis-url", "%q is not a redis:// URL", c.RedisURL)
		}
	}
	c.validateHTTP(bad)
	c.validateBounds(bad)
	if _, _, err := c.channelKeys(); err != nil {
		errs = append(errs, err)
	}
	if c.ChatTrustProxy {
		bad("chat-trust-proxy", "this setting was removed: it believed an X-Forwarded-For any client can write; list your proxies' networks in trusted-proxies instead")
	}
	if _, err := clientip.ParseNetworks(c.TrustedProxies); err != nil {
		bad("trusted-proxies", "%v", err)
	}
	errs = append(errs, chatOptionErrors(*c)...)
	return errors.Join(errs...)
}

// validateTLS checks that RTMPS has its certificate and key, and its own
// port. Whether the files hold a good pair is checked where they are used,
// at start-up of a node with the ingest role.
func (c *Config) validateTLS(bad func(key, format string, a ...any)) {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		bad("tls-key", "required with tls-cert")
	case c.TLSKey != "" && c.TLSCert == "":
		bad("tls-cert", "required with tls-key")
	case c.RTMPSAddr != "" && c.TLSCert == "":
		bad("tls-cert", "required with rtmps-addr (and tls-key)")
	}
	if _, port, _ := net.SplitHostPort(c.RTMPSAddr); c.RTMPSAddr == c.RTMPAddr && port != "0" {
		bad("rtmps-addr", "%q is rtmp-addr too; RTMPS needs a port of its own", c.RTMPSAddr)
	}
}
