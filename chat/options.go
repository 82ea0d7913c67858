package chat

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// FilterMode says what the word filter does with a listed word.
type FilterMode string

// Word filter modes.
const (
	FilterMask   FilterMode = "mask"   // replace the word with asterisks
	FilterRefuse FilterMode = "refuse" // refuse the message with error code "filtered"
)

// Options configures a Server. Start from DefaultOptions: NewServer refuses values outside
// the ranges Validate states instead of replacing them.
type Options struct {
	HistoryLen        int           // messages kept per room and sent on join (50; 1–1000)
	MaxMessageLen     int           // characters (code points) per message (500; 1–10000, and within ReadLimit)
	ReadLimit         int64         // bytes per client frame; bigger frames close with 1009 (4096; 256 B–1 MiB)
	ConnMessages      int           // messages per ConnWindow per connection (5)
	ConnWindow        time.Duration // (5s; 100ms–1h)
	IPMessages        int           // messages per IPWindow per client IP (10)
	IPWindow          time.Duration // (5s; 100ms–1h)
	ConnsPerIP        int           // simultaneous connections per client IP (20)
	UpgradesPerMinute int           // WebSocket handshakes per client IP per minute, as a bucket of that size (60)
	NameMinLen        int           // display name length in characters (1)
	NameMaxLen        int           // (24; at most 64)
	ReservedNames     []string      // names (and prefixes of the longer ones) users cannot take (system, admin, moderator, mod, onair, staff, server)
	FilterWords       []string      // word filter list, matched case-insensitively as whole words (none)
	FilterMode        FilterMode    // mask or refuse (mask)
	MaxQueueBytes     int           // outbound bytes queued per connection before it is cut off with 1008 (256 KiB)
	PingInterval      time.Duration // WebSocket ping period (30s)
	PongWait          time.Duration // read deadline after each pong; longer than PingInterval (60s)
	WriteTimeout      time.Duration // deadline for one write (10s)
	PresenceInterval  time.Duration // how often viewer counts are exchanged and pushed (2s)
	RoomTTL           time.Duration // how long viewer counts of a room nobody is in are remembered (10m); buses have their own
	SocketSendBuffer  int           // SO_SNDBUF per connection in bytes; 0 keeps the OS default (autotuning)
	MaxBatchBytes     int           // events coalesced into one frame under load, in bytes (16 KiB)
	FrameInterval     time.Duration // minimum time between a room's broadcast frames; faster events share a frame (50ms; 0 or negative: none)

	// TrustedProxies are the networks of proxies whose X-Forwarded-For hops are believed;
	// the client is the right-most hop not in them. Empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are browser origins ("https://example.com", scheme://host[:port]) that
	// may open chat, besides pages of the host the request was sent to; "*" allows any.
	// Requests without an Origin header (not from a browser) are not checked.
	AllowedOrigins []string
	// Known reports whether a channel exists; connections to other rooms are refused with
	// 404 before the upgrade, so no room, history or key is made for them. Nil allows every
	// valid name.
	Known func(channel string) bool

	Secret      []byte      // HMAC key for moderator tokens; nil disables moderator tokens
	Revocations Revocations // revoked moderator token ids; nil: the bus's if it keeps them, else in memory
	Bus         Bus         // message bus; nil uses a private in-memory bus
	Logger      *slog.Logger
}

// DefaultOptions returns the default limits.
func DefaultOptions() Options {
	return Options{
		HistoryLen:        50,
		MaxMessageLen:     500,
		ReadLimit:         4096,
		ConnMessages:      5,
		ConnWindow:        5 * time.Second,
		IPMessages:        10,
		IPWindow:          5 * time.Second,
		ConnsPerIP:        20,
		UpgradesPerMinute: 60,
		NameMinLen:        1,
		NameMaxLen:        24,
		ReservedNames:     []string{"system", "admin", "administrator", "moderator", "mod", "onair", "staff", "server"},
		FilterMode:        FilterMask,
		MaxQueueBytes:     256 << 10,
		PingInterval:      30 * time.Second,
		PongWait:          60 * time.Second,
		WriteTimeout:      10 * time.Second,
		PresenceInterval:  2 * time.Second,
		RoomTTL:           10 * time.Minute,
		MaxBatchBytes:     16 << 10,
		FrameInterval:     50 * time.Millisecond,
	}
}

// OptionError is an Options field Validate refuses.
type OptionError struct {
	Field   string // the Options field, e.g. "ConnMessages"
	Problem string // what is wrong, e.g. "must be between 1 and 10000, got 0"
}

func (e *OptionError) Error() string { return "chat: option " + e.Field + " " + e.Problem }

// Validate reports every field outside its range, as *OptionError values joined into one
// error: negative counts, zero where a zero means nothing sensible, and absurd sizes.
func (o Options) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &OptionError{Field: field, Problem: fmt.Sprintf(format, a...)})
	}
	ints := []struct {
		field    string
		v        int64
		min, max int64
	}{
		{"HistoryLen", int64(o.HistoryLen), 1, 1000},
		{"MaxMessageLen", int64(o.MaxMessageLen), 1, 10000},
		{"ReadLimit", o.ReadLimit, 256, 1 << 20},
		{"ConnMessages", int64(o.ConnMessages), 1, 10000},
		{"IPMessages", int64(o.IPMessages), 1, 1000000},
		{"ConnsPerIP", int64(o.ConnsPerIP), 1, 1000000},
		{"UpgradesPerMinute", int64(o.UpgradesPerMinute), 1, 1000000},
		{"NameMinLen", int64(o.NameMinLen), 1, 64},
		{"NameMaxLen", int64(o.NameMaxLen), 1, 64},
		{"MaxQueueBytes", int64(o.MaxQueueBytes), 1 << 10, 64 << 20},
		{"MaxBatchBytes", int64(o.MaxBatchBytes), 256, 1 << 20},
		{"SocketSendBuffer", int64(o.SocketSendBuffer), 0, 64 << 20},
	}
	for _, f := range ints {
		if f.v < f.min || f.v > f.max {
			bad(f.field, "must be between %d and %d, got %d", f.min, f.max, f.v)
		}
	}
	durs := []struct {
		field    string
		v        time.Duration
		min, max time.Duration
	}{
		{"ConnWindow", o.ConnWindow, 100 * time.Millisecond, time.Hour},
		{"IPWindow", o.IPWindow, 100 * time.Millisecond, time.Hour},
		{"PingInterval", o.PingInterval, 100 * time.Millisecond, time.Hour},
		{"PongWait", o.PongWait, 100 * time.Millisecond, 2 * time.Hour},
		{"WriteTimeout", o.WriteTimeout, 10 * time.Millisecond, time.Hour},
		{"PresenceInterval", o.PresenceInterval, 10 * time.Millisecond, time.Minute},
		{"RoomTTL", o.RoomTTL, time.Second, 30 * 24 * time.Hour},
		{"FrameInterval", o.FrameInterval, -time.Hour, time.Second},
	}
	for _, f := range durs {
		if f.v < f.min || f.v > f.max {
			bad(f.field, "must be between %v and %v, got %v", f.min, f.max, f.v)
		}
	}
	if o.NameMaxLen < o.NameMinLen {
		bad("NameMaxLen", "must not be below NameMinLen (%d), got %d", o.NameMinLen, o.NameMaxLen)
	}
	if o.PongWait <= o.PingInterval {
		bad("PongWait", "must be longer than PingInterval (%v), got %v", o.PingInterval, o.PongWait)
	}
	// A message of MaxMessageLen plain characters must fit in one frame with its JSON around it.
	if o.ReadLimit >= 256 && int64(o.MaxMessageLen)+128 > o.ReadLimit {
		bad("MaxMessageLen", "must leave room for the JSON around it in a frame of ReadLimit (%d bytes): at most %d, got %d",
			o.ReadLimit, o.ReadLimit-128, o.MaxMessageLen)
	}
	if o.FilterMode != FilterMask && o.FilterMode != FilterRefuse {
		bad("FilterMode", "must be %q or %q, got %q", FilterMask, FilterRefuse, o.FilterMode)
	}
	for _, origin := range o.AllowedOrigins {
		if _, err := normalizeOrigin(origin); err != nil && origin != "*" {
			bad("AllowedOrigins", "%v", err)
		}
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			bad("TrustedProxies", "holds an invalid network")
		}
	}
	return errors.Join(errs...)
}

// normalizeOrigin returns an origin as browsers send it: scheme://host[:port], lower-case,
// without a default port. It refuses anything with a path, query or user.
func normalizeOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin (want scheme://host[:port], such as https://example.com)", s)
	}
	host := strings.ToLower(u.Host)
	if (u.Scheme == "http" && strings.HasSuffix(host, ":80")) || (u.Scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return strings.ToLower(u.Scheme) + "://" + host, nil
}

// OriginOf returns the origin of a base URL such as a server's public URL ("" if it has none).
func OriginOf(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return ""
	}
	o, err := normalizeOrigin(u.Scheme + "://" + u.Host)
	if err != nil {
		return ""
	}
	return o
}
