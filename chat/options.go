package chat

import (
	"log/slog"
	"time"
)

// FilterMode says what the word filter does with a listed word.
type FilterMode string

// Word filter modes.
const (
	FilterMask   FilterMode = "mask"   // replace the word with asterisks
	FilterRefuse FilterMode = "refuse" // refuse the message with error code "filtered"
)

// Options configures a Server. A zero field means the default from DefaultOptions.
type Options struct {
	HistoryLen       int           // messages kept per room and sent on join (50)
	MaxMessageLen    int           // characters (code points) per message (500)
	ReadLimit        int64         // bytes per client frame; bigger frames close with 1009 (4096)
	ConnMessages     int           // messages per ConnWindow per connection (5)
	ConnWindow       time.Duration // (5s)
	IPMessages       int           // messages per IPWindow per client IP (10)
	IPWindow         time.Duration // (5s)
	ConnsPerIP       int           // simultaneous connections per client IP (20)
	NameMinLen       int           // display name length in characters (1)
	NameMaxLen       int           // (24)
	ReservedNames    []string      // names (and prefixes of the longer ones) users cannot take (system, admin, moderator, mod, onair, staff, server)
	FilterWords      []string      // word filter list, matched case-insensitively as whole words (none)
	FilterMode       FilterMode    // mask or refuse (mask)
	MaxQueueBytes    int           // outbound bytes queued per connection before it is cut off with 1008 (256 KiB)
	PingInterval     time.Duration // WebSocket ping period (30s)
	PongWait         time.Duration // read deadline after each pong (60s)
	WriteTimeout     time.Duration // deadline for one write (10s)
	PresenceInterval time.Duration // how often viewer counts are exchanged and pushed (2s)
	SocketSendBuffer int           // SO_SNDBUF per connection in bytes; 0 keeps the OS default (autotuning)
	TrustProxy       bool          // take the client IP from X-Forwarded-For's last hop (behind a trusted proxy only)
	AllowedOrigins   []string      // allowed Origin header values; empty allows any origin
	MaxBatchBytes    int           // events coalesced into one frame under load, in bytes (16 KiB)
	FrameInterval    time.Duration // minimum time between a room's broadcast frames; faster events share a frame (50ms; negative: none)

	Secret     []byte // HMAC key for moderator tokens; nil disables moderator tokens
	AdminToken string // also accepted as a moderator token in every room; empty disables
	Bus        Bus    // message bus; nil uses a private in-memory bus
	Logger     *slog.Logger
}

// DefaultOptions returns the default limits.
func DefaultOptions() Options {
	return Options{
		HistoryLen:       50,
		MaxMessageLen:    500,
		ReadLimit:        4096,
		ConnMessages:     5,
		ConnWindow:       5 * time.Second,
		IPMessages:       10,
		IPWindow:         5 * time.Second,
		ConnsPerIP:       20,
		NameMinLen:       1,
		NameMaxLen:       24,
		ReservedNames:    []string{"system", "admin", "administrator", "moderator", "mod", "onair", "staff", "server"},
		FilterMode:       FilterMask,
		MaxQueueBytes:    256 << 10,
		PingInterval:     30 * time.Second,
		PongWait:         60 * time.Second,
		WriteTimeout:     10 * time.Second,
		PresenceInterval: 2 * time.Second,
		MaxBatchBytes:    16 << 10,
		FrameInterval:    50 * time.Millisecond,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&o.HistoryLen, d.HistoryLen)
	setInt(&o.MaxMessageLen, d.MaxMessageLen)
	if o.ReadLimit <= 0 {
		o.ReadLimit = d.ReadLimit
	}
	setInt(&o.ConnMessages, d.ConnMessages)
	setDur(&o.ConnWindow, d.ConnWindow)
	setInt(&o.IPMessages, d.IPMessages)
	setDur(&o.IPWindow, d.IPWindow)
	setInt(&o.ConnsPerIP, d.ConnsPerIP)
	setInt(&o.NameMinLen, d.NameMinLen)
	setInt(&o.NameMaxLen, d.NameMaxLen)
	if o.ReservedNames == nil {
		o.ReservedNames = d.ReservedNames
	}
	if o.FilterMode == "" {
		o.FilterMode = d.FilterMode
	}
	setInt(&o.MaxQueueBytes, d.MaxQueueBytes)
	setDur(&o.PingInterval, d.PingInterval)
	setDur(&o.PongWait, d.PongWait)
	setDur(&o.WriteTimeout, d.WriteTimeout)
	setDur(&o.PresenceInterval, d.PresenceInterval)
	setInt(&o.MaxBatchBytes, d.MaxBatchBytes)
	if o.FrameInterval == 0 {
		o.FrameInterval = d.FrameInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
