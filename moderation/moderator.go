// Package moderation screens the keyframes of live broadcasts and takes down
// the ones that show what they must not.
//
// A Moderator is an ingest.Consumer. For every broadcast it samples keyframes
// (the first, then one per Interval) into a one-slot mailbox. With screeners
// configured, each broadcast's screening goroutine has the newest sample
// decoded to JPEG by the decode pool (a fixed number of long-lived ffmpeg
// processes shared by every broadcast, see pool.go) and runs the screeners in
// order: a perceptual-hash blocklist, then an HTTP webhook. A block verdict
// takes the broadcast down through the Enforcer; a flag is recorded. Without
// screeners nothing is decoded until someone asks for a thumbnail. Starting a
// broadcast costs a mailbox and, when screening, a goroutine: never a
// process. All of it runs beside the media path: Consume only drains its feed
// and hands keyframes to the mailbox.
package moderation

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// ReasonUnavailable is the takedown reason under FailClosed.
const ReasonUnavailable = "screening unavailable"

// ReasonUnscreened is the reason of the flag raised under FailOpen.
const ReasonUnscreened = "screening unavailable: continues unscreened (failure policy open)"

// Event is a recorded moderation decision: a flag or a takedown.
type Event struct {
	Time        time.Time     `json:"time"`
	Channel     string        `json:"channel"`
	BroadcastID string        `json:"broadcast_id"`
	Action      Action        `json:"action"`
	Reason      string        `json:"reason"`
	Screener    string        `json:"screener"`
	Ban         time.Duration `json:"ban_ns,omitempty"`
	// KeyframeTime is the frame's media time in the broadcast.
	KeyframeTime time.Duration `json:"keyframe_time_ns"`
}

// Status is a channel's moderation state, for the API.
type Status struct {
	Live        bool   `json:"live"`
	BroadcastID string `json:"broadcast_id,omitempty"`
	// Cleared is what Cleared returns.
	Cleared bool `json:"cleared"`
	// Screened is when a frame of this broadcast last passed screening.
	Screened time.Time `json:"screened,omitzero"`
	// FailingSince is when screening started failing continuously, if it is.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Unscreened is true while FailOpen lets the broadcast run unscreened.
	Unscreened bool `json:"unscreened"`
	// Events are the channel's recent flags and takedowns, oldest first.
	Events []Event `json:"events"`
}

// Moderator screens broadcasts; it implements ingest.Consumer.
type Moderator struct {
	opts      Options
	screeners []Screener
	ffmpegErr error // why frames cannot be decoded, or nil
	log       *slog.Logger
	metrics   *metrics
	pool      *decodePool

	mu       sync.Mutex
	channels map[string]*broadcastState // live broadcasts by channel
	events   map[string][]Event

	actions sync.WaitGroup // takedown calls in flight
	history *history       // nil: events are kept in memory only
}

// broadcastState is one live broadcast's moderation state. The fields below
// mu are guarded by Moderator.mu.
type broadcastState struct {
	b       *ingest.Broadcast
	sampler *Sampler
	track   *ingest.VideoTrack // as the decoder gets it; nil without video
	key     decoderKey

	cleared      bool
	screened     time.Time
	failingSince time.Time
	unscreened   bool
	takenDown    bool
	thumb        []byte
	thumbAt      time.Time // when ingest received the thumbnail's keyframe
	thumbETag    string
	thumbMade    time.Time      // when thumb was decoded
	refresh      *decodeRequest // a thumbnail decode under way (no screeners)
	splits       splitTracker
}

var _ ingest.Consumer = (*Moderator)(nil)

// New returns a Moderator and starts its decode pool (Close stops it). It
// fails on a bad setting; a missing ffmpeg is not an error (see Check) so
// that the server still starts.
func New(opts Options) (*Moderator, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("moderation: %w", err)
	}
	opts.fill()
	if opts.DefaultBan > opts.MaxBan {
		return nil, fmt.Errorf("moderation: the default ban %v is longer than the longest ban %v", opts.DefaultBan, opts.MaxBan)
	}
	m := &Moderator{
		opts:     opts,
		log:      opts.Logger.With("component", "moderation"),
		metrics:  newMetrics(),
		channels: make(map[string]*broadcastState),
		events:   make(map[string][]Event),
	}
	if opts.BlocklistPath != "" {
		l, err := NewHashList(opts.BlocklistPath, opts.HashDistance, opts.BlocklistPoll)
		if err != nil {
			return nil, fmt.Errorf("moderation: %w", err)
		}
		m.screeners = append(m.screeners, l)
		m.log.Info("hash blocklist loaded", "path", opts.BlocklistPath, "hashes", l.Len(), "distance", opts.HashDistance)
	}
	if opts.WebhookURL != "" {
		w := NewWebhook(opts.WebhookURL, opts.WebhookSecret, opts.HTTPClient)
		w.log = m.log
		m.screeners = append(m.screeners, w)
		if why := insecureHookURL(opts.WebhookURL); why != "" {
			m.log.Warn("moderation webhook is not protected in transit: use https", "why", why)
		}
	}
	m.screeners = append(m.screeners, opts.Screeners...)
	if opts.HistoryPath != "" {
		h, events, err := openHistory(opts.HistoryPath, opts.EventsPerChannel)
		if err != nil {
			return nil, fmt.Errorf("moderation: %w", err)
		}
		m.history, m.events = h, events
	}
	if _, err := exec.LookPath(opts.FFmpegPath); err != nil {
		m.ffmpegErr = fmt.Errorf("moderation: ffmpeg not found (%q): keyframes cannot be decoded: %w", opts.FFmpegPath, err)
		if len(m.screeners) > 0 {
			m.log.Error("ffmpeg not found: screening will fail and follow the failure policy",
				"ffmpeg", opts.FFmpegPath, "policy", opts.FailurePolicy, "err", err)
		} else {
			m.log.Warn("ffmpeg not found: no thumbnails", "ffmpeg", opts.FFmpegPath, "err", err)
		}
	}
	if len(m.screeners) == 0 {
		m.log.Info("no screeners configured: broadcasts are not screened")
	}
	m.pool = newDecodePool(poolOptions{
		FFmpegPath: opts.FFmpegPath,
		MaxWidth:   max(opts.FrameWidth, 0),
		Workers:    opts.Decoders,
		QueueMax:   opts.DecodeQueue,
		Timeout:    opts.DecodeTimeout,
		Idle:       opts.DecoderIdle,
		Logger:     m.log,
	}, m.metrics)
	return m, nil
}

// Check reports why frames cannot be decoded (ffmpeg missing), or nil.
func (m *Moderator) Check() error { return m.ffmpegErr }

// Screening reports whether any screener is configured.
func (m *Moderator) Screening() bool { return len(m.screeners) > 0 }

// Close waits for takedown calls still in flight, then stops the decode pool
// and its ffmpeg processes. Call it after the hub has stopped all broadcasts.
func (m *Moderator) Close() error {
	m.actions.Wait()
	m.pool.close()
	if m.history != nil {
		return m.history.close()
	}
	return nil
}

// Cleared reports whether the channel's current broadcast may be shown: with
// the gate on, only once its first sampled keyframe passed screening (or
// screening failed for FailureAfter under FailOpen); never after a takedown.
// Without screeners or with the gate off it is true for any live channel.
func (m *Moderator) Cleared(channel string) bool {
	if !m.opts.Gate || len(m.screeners) == 0 {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.channels[channel]
	return st != nil && st.cleared && !st.takenDown
}

// Events returns the channel's recent flags and takedowns, oldest first.
func (m *Moderator) Events(channel string) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events[channel]...)
}

// Recent returns up to limit of the newest events, newest first: of one
// channel, or of every channel when channel is "".
func (m *Moderator) Recent(channel string, limit int) []Event {
	m.mu.Lock()
	var out []Event
	if channel != "" {
		out = append(out, m.events[channel]...)
	} else {
		for _, evs := range m.events {
			out = append(out, evs...)
		}
	}
	m.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Status returns the channel's moderation state.
func (m *Moderator) Status(channel string) Status {
	s := Status{Cleared: m.Cleared(channel), Events: m.Events(channel)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.channels[channel]; st != nil {
		s.Live, s.BroadcastID = true, st.b.ID
		s.Screened, s.FailingSince, s.Unscreened = st.screened, st.failingSince, st.unscreened
	}
	return s
}

// Consume implements ingest.Consumer: it samples keyframes into a mailbox and
// screens them in a goroutine of its own, so reading the feed never waits on
// decoding, screening or actions.
func (m *Moderator) Consume(ctx context.Context, b *ingest.Broadcast, feed *ingest.Feed) {
	log := m.log.With("channel", b.Channel, "broadcast", b.ID)
	defer m.recoverPanic("consume", log)
	screening := len(m.screeners) > 0
	st := &broadcastState{b: b, cleared: !m.opts.Gate || !screening}
	mode := SampleKeyframes
	if v := b.Tracks.Video; v == nil {
		st.cleared = true // nothing to see
	} else {
		st.track, st.key = v, keyFor(v, b.ID, m.opts.FrameWidth)
		if decodable(v.Codec) {
			var between bool
			st.track, between = lowDelayTrack(v, log)
			if screening && m.opts.Sample == SampleAny {
				// Frames between keyframes need an H.264 SPS that states no
				// reordering and a known frame size (see Decoder.DecodeSample).
				// (A frame size out of bounds is refused at each sample.)
				switch {
				case between && st.key.broadcast == "":
					mode = SampleAny
				case !between:
					log.Warn("frames between keyframes cannot be screened for this stream: screening keyframes only", "codec", v.Codec)
				}
			}
		}
	}
	st.sampler = NewModeSampler(m.opts.Interval, mode, disposableH264)
	m.mu.Lock()
	m.channels[b.Channel] = st
	m.mu.Unlock()
	m.metrics.live.Add(1)
	defer m.forget(st)

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if st.track != nil && screening {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.recoverPanic("screening", log)
			m.screenLoop(wctx, st, log)
		}()
	}
	// The media path: per unit a few comparisons (and in SampleAny mode the
	// unit's place in its GOP), no allocation but a GOP's growing list, no
	// lock of the Moderator's.
	longGOP := false
	for {
		au, err := feed.Next(ctx)
		if err != nil {
			break
		}
		if au.Kind != ingest.KindVideo || (!au.Key && mode != SampleAny) {
			continue
		}
		if taken, replaced := st.sampler.Observe(au); taken && screening {
			m.metrics.sampled.Add(1)
			if replaced {
				m.metrics.superseded.Add(1)
			}
		}
		if !longGOP && st.sampler.GOPTooLong() {
			longGOP = true
			m.flag(st, Event{Action: Flag, Reason: ReasonLongGOP, Screener: "sampler", KeyframeTime: au.PTS}, log)
		}
	}
}

// forget drops an ended broadcast's state and withdraws its thumbnail decode.
func (m *Moderator) forget(st *broadcastState) {
	m.mu.Lock()
	if m.channels[st.b.Channel] == st {
		delete(m.channels, st.b.Channel)
	}
	req := st.refresh
	m.mu.Unlock()
	if req != nil {
		m.pool.cancel(req)
	}
	m.metrics.live.Add(-1)
}

// recoverPanic, deferred at the top of a per-stream goroutine, turns a panic
// into a log line and a metric so one broadcast cannot take the server down.
func (m *Moderator) recoverPanic(where string, log *slog.Logger) {
	if r := recover(); r != nil {
		m.metrics.panicked(where)
		log.Error("moderation goroutine panicked", "where", where, "panic", r, "stack", string(debug.Stack()))
	}
}

// lowDelayTrack returns the track to give the decoder (see decoderTrack),
// and whether frames between keyframes can be screened with it.
func lowDelayTrack(v *ingest.VideoTrack, log *slog.Logger) (*ingest.VideoTrack, bool) {
	track, between, err := decoderTrack(v)
	if err != nil {
		// The original SPS still decodes, only with a delay of a few keyframes.
		log.Warn("cannot rewrite SPS for low-delay decoding", "err", err)
		return v, false
	}
	return track, between
}

// ReasonLongGOP is the reason of the flag raised for a broadcast whose
// keyframes are too far apart for its frames between them to be screened
// (maxPrefixFrames).
const ReasonLongGOP = "keyframes more than 300 frames apart: frames after that in a GOP are not screened"

// flag records a flag raised by moderation itself and tells OnFlag.
func (m *Moderator) flag(st *broadcastState, ev Event, log *slog.Logger) {
	m.metrics.verdict(Flag)
	ev = m.record(st, ev)
	log.Warn("broadcast flagged", "screener", ev.Screener, "reason", ev.Reason)
	if m.opts.OnFlag != nil {
		m.opts.OnFlag(ev)
	}
}

// record appends an event to the channel's history and returns it completed.
func (m *Moderator) record(st *broadcastState, ev Event) Event {
	ev.Time, ev.Channel, ev.BroadcastID = time.Now(), st.b.Channel, st.b.ID
	return m.Record(ev)
}

// Record adds an event to its channel's history (a takedown decided outside
// moderation, by an admin, is one) and returns it.
func (m *Moderator) Record(ev Event) Event {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	m.mu.Lock()
	evs := append(m.events[ev.Channel], ev)
	if len(evs) > m.opts.EventsPerChannel {
		evs = append([]Event(nil), evs[len(evs)-m.opts.EventsPerChannel:]...)
	}
	m.events[ev.Channel] = evs
	m.mu.Unlock()
	if m.history != nil {
		if err := m.history.add(ev); err != nil {
			m.log.Error("moderation event not kept across restarts", "channel", ev.Channel, "err", err)
		}
	}
	if m.opts.OnRecord != nil {
		m.opts.OnRecord(ev)
	}
	return ev
}
