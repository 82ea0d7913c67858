package moderation

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"
)

// FailurePolicy says what happens when screening keeps failing.
type FailurePolicy string

// Failure policies.
const (
	// FailOpen keeps the broadcast up (and public) without screening, and counts it.
	FailOpen FailurePolicy = "open"
	// FailClosed takes the broadcast down with the reason "screening unavailable".
	FailClosed FailurePolicy = "closed"
)

// Enforcer ends broadcasts; ingest's channel hub implements it.
type Enforcer interface {
	// TakeDown ends the channel's broadcast, disconnects the publisher and
	// refuses republishing for ban (none when ban is zero).
	TakeDown(channel, reason string, ban time.Duration) error
}

// Options configures a Moderator. Zero values mean the defaults given, except
// Gate: start from DefaultOptions to get the gate on. Negative values are
// refused by New (FrameWidth excepted).
type Options struct {
	// Interval between screened frames of a broadcast, in media time (default 2 s).
	Interval time.Duration
	// Sample says which frames are screened (default SampleAny: keyframes
	// and frames between them, at random points of each interval).
	Sample SampleMode

	// BlocklistPath is a file of perceptual hashes to block (see HashList); empty: none.
	BlocklistPath string
	// HashDistance is the largest Hamming distance that counts as a match (default 10).
	HashDistance int
	// BlocklistPoll is how often the blocklist file is checked for changes (default 3 s).
	BlocklistPoll time.Duration

	// WebhookURL receives each sampled frame (see Webhook); empty: no webhook.
	WebhookURL string
	// WebhookSecret keys the request signature; required with WebhookURL.
	WebhookSecret string
	// HTTPClient makes webhook requests (default http.DefaultClient).
	HTTPClient *http.Client

	// Screeners run after the built-in ones.
	Screeners []Screener
	// ScreenTimeout bounds each screener's work on one frame (default 5 s).
	ScreenTimeout time.Duration

	// Gate keeps a broadcast unlisted (Cleared false) until its first keyframe
	// passed screening. DefaultOptions turns it on.
	Gate bool
	// FailurePolicy applies once screening has failed continuously for
	// FailureAfter (default FailOpen).
	FailurePolicy FailurePolicy
	// FailureAfter is how long screening may fail before the policy applies
	// (default 10 s). A frame that waits this long for a decoder counts as a
	// failure too.
	FailureAfter time.Duration
	// DefaultBan is the republish ban after a block whose verdict names none (default 10 min).
	DefaultBan time.Duration
	// MaxBan caps the ban a verdict may ask for (default 30 days); a longer
	// one is cut to MaxBan and logged.
	MaxBan time.Duration

	// FFmpegPath is the ffmpeg executable (default "ffmpeg").
	FFmpegPath string
	// FrameWidth scales wider frames down before screening (default 640; negative: keep).
	FrameWidth int
	// DecodeTimeout bounds decoding one keyframe in a running decoder (default 3 s).
	DecodeTimeout time.Duration
	// Decoders is the number of decoder workers shared by every broadcast,
	// and so the most ffmpeg processes that run at once (default GOMAXPROCS).
	Decoders int
	// DecodeQueue bounds the frames waiting for a decoder (default 1024); a
	// frame that finds it full is dropped and counts as a decoding failure.
	// A broadcast has at most one frame waiting.
	DecodeQueue int
	// DecoderIdle is how long a decoder process may sit unused before it is
	// stopped (default 30 s).
	DecoderIdle time.Duration
	// ThumbnailInterval applies when no screener is configured: frames are
	// then decoded only for thumbnails, when one is asked for and the one
	// there is older than ThumbnailInterval (default 10 s).
	ThumbnailInterval time.Duration

	// Enforcer takes broadcasts down. Without one, blocks are only logged.
	Enforcer Enforcer
	// OnTakedown is called after Enforcer.TakeDown (drop the HLS, post in chat).
	OnTakedown func(channel, broadcastID, reason string)
	// OnFlag is called for each flag verdict.
	OnFlag func(Event)
	// EventsPerChannel is how many recent events Events keeps per channel (default 50).
	EventsPerChannel int
	// HistoryPath, when set, is a file where events are kept across
	// restarts (JSON lines; rewritten with the newest EventsPerChannel per
	// channel at start).
	HistoryPath string
	// OnRecord, when set, is told of every event recorded (after it is kept),
	// on the recording goroutine: it must not block for long.
	OnRecord func(Event)

	// Logger receives the moderation log (default slog.Default()).
	Logger *slog.Logger
}

// DefaultOptions returns the defaults, with the gate on.
func DefaultOptions() Options {
	return Options{
		Interval:          2 * time.Second,
		Sample:            SampleAny,
		HashDistance:      10,
		BlocklistPoll:     3 * time.Second,
		ScreenTimeout:     5 * time.Second,
		Gate:              true,
		FailurePolicy:     FailOpen,
		FailureAfter:      10 * time.Second,
		DefaultBan:        10 * time.Minute,
		MaxBan:            30 * 24 * time.Hour,
		FFmpegPath:        "ffmpeg",
		FrameWidth:        640,
		DecodeTimeout:     3 * time.Second,
		Decoders:          runtime.GOMAXPROCS(0),
		DecodeQueue:       1024,
		DecoderIdle:       30 * time.Second,
		ThumbnailInterval: 10 * time.Second,
		EventsPerChannel:  50,
	}
}

// check refuses settings that make no sense, before fill replaces zeros.
func (o *Options) check() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"Interval": o.Interval, "BlocklistPoll": o.BlocklistPoll, "ScreenTimeout": o.ScreenTimeout,
		"FailureAfter": o.FailureAfter, "DefaultBan": o.DefaultBan, "MaxBan": o.MaxBan,
		"DecodeTimeout": o.DecodeTimeout, "DecoderIdle": o.DecoderIdle, "ThumbnailInterval": o.ThumbnailInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%v)", name, d))
		}
	}
	for name, n := range map[string]int{"HashDistance": o.HashDistance, "Decoders": o.Decoders,
		"DecodeQueue": o.DecodeQueue, "EventsPerChannel": o.EventsPerChannel} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%d)", name, n))
		}
	}
	if o.HashDistance > 64 {
		errs = append(errs, fmt.Errorf("HashDistance %d is more than the 64 bits of a hash", o.HashDistance))
	}
	switch o.Sample {
	case "", SampleAny, SampleKeyframes:
	default:
		errs = append(errs, fmt.Errorf("sample mode %q is neither %q nor %q", o.Sample, SampleAny, SampleKeyframes))
	}
	switch o.FailurePolicy {
	case "", FailOpen, FailClosed:
	default:
		errs = append(errs, fmt.Errorf("failure policy %q is neither %q nor %q", o.FailurePolicy, FailOpen, FailClosed))
	}
	if o.WebhookURL != "" && o.WebhookSecret == "" {
		errs = append(errs, errors.New("a webhook needs a secret to sign its requests"))
	}
	return errors.Join(errs...)
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Interval == 0 {
		o.Interval = d.Interval
	}
	if o.Sample == "" {
		o.Sample = d.Sample
	}
	if o.HashDistance == 0 {
		o.HashDistance = d.HashDistance
	}
	if o.BlocklistPoll == 0 {
		o.BlocklistPoll = d.BlocklistPoll
	}
	if o.ScreenTimeout == 0 {
		o.ScreenTimeout = d.ScreenTimeout
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = d.FailurePolicy
	}
	if o.FailureAfter == 0 {
		o.FailureAfter = d.FailureAfter
	}
	if o.DefaultBan == 0 {
		o.DefaultBan = d.DefaultBan
	}
	if o.MaxBan == 0 {
		o.MaxBan = max(d.MaxBan, o.DefaultBan)
	}
	if o.FFmpegPath == "" {
		o.FFmpegPath = d.FFmpegPath
	}
	if o.FrameWidth == 0 {
		o.FrameWidth = d.FrameWidth
	}
	if o.DecodeTimeout == 0 {
		o.DecodeTimeout = d.DecodeTimeout
	}
	if o.Decoders == 0 {
		o.Decoders = d.Decoders
	}
	if o.DecodeQueue == 0 {
		o.DecodeQueue = d.DecodeQueue
	}
	if o.DecoderIdle == 0 {
		o.DecoderIdle = d.DecoderIdle
	}
	if o.ThumbnailInterval == 0 {
		o.ThumbnailInterval = d.ThumbnailInterval
	}
	if o.EventsPerChannel == 0 {
		o.EventsPerChannel = d.EventsPerChannel
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}
