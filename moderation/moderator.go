// Package moderation screens the keyframes of live broadcasts and takes down
// the ones that show what they must not.
//
// A Moderator is an ingest.Consumer. For every broadcast it samples keyframes
// (the first, then one per Interval), decodes them to JPEG with a long-lived
// ffmpeg process, and runs the screeners in order: a perceptual-hash
// blocklist, then an HTTP webhook. A block verdict takes the broadcast down
// through the Enforcer; a flag is recorded. Without screeners, keyframes are
// decoded only for thumbnails, on demand, each by an ffmpeg process started
// for it. All of it runs beside the media path: Consume only drains its feed
// and hands keyframes to a one-slot mailbox.
package moderation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
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

// ReasonUnavailable is the takedown reason under FailClosed.
const ReasonUnavailable = "screening unavailable"

// Enforcer ends broadcasts; ingest's channel hub implements it.
type Enforcer interface {
	// TakeDown ends the channel's broadcast, disconnects the publisher and
	// refuses republishing for ban (none when ban is zero).
	TakeDown(channel, reason string, ban time.Duration) error
}

// Options configures a Moderator. Zero values mean the defaults given, except
// Gate: start from DefaultOptions to get the gate on.
type Options struct {
	// Interval between sampled keyframes of a broadcast, in media time (default 2 s).
	Interval time.Duration

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
	// FailureAfter is how long screening may fail before the policy applies (default 10 s).
	FailureAfter time.Duration
	// DefaultBan is the republish ban after a block whose verdict names none (default 10 min).
	DefaultBan time.Duration

	// FFmpegPath is the ffmpeg executable (default "ffmpeg").
	FFmpegPath string
	// FrameWidth scales wider frames down before screening (default 640; negative: keep).
	FrameWidth int
	// DecodeTimeout bounds decoding one keyframe (default 3 s).
	DecodeTimeout time.Duration
	// ThumbnailInterval applies when no screener is configured: frames are
	// then decoded only for thumbnails, on demand (the first keyframe of a
	// broadcast, then when a thumbnail is asked for), by an ffmpeg process
	// started for that frame, at most once per ThumbnailInterval per
	// broadcast (default 10 s).
	ThumbnailInterval time.Duration

	// Enforcer takes broadcasts down. Without one, blocks are only logged.
	Enforcer Enforcer
	// OnTakedown is called after Enforcer.TakeDown (drop the HLS, post in chat).
	OnTakedown func(channel, broadcastID, reason string)
	// OnFlag is called for each flag verdict.
	OnFlag func(Event)
	// EventsPerChannel is how many recent events Events keeps per channel (default 50).
	EventsPerChannel int

	// Logger receives the moderation log (default slog.Default()).
	Logger *slog.Logger
}

// DefaultOptions returns the defaults, with the gate on.
func DefaultOptions() Options {
	return Options{
		Interval:          2 * time.Second,
		HashDistance:      10,
		BlocklistPoll:     3 * time.Second,
		ScreenTimeout:     5 * time.Second,
		Gate:              true,
		FailurePolicy:     FailOpen,
		FailureAfter:      10 * time.Second,
		DefaultBan:        10 * time.Minute,
		FFmpegPath:        "ffmpeg",
		FrameWidth:        640,
		DecodeTimeout:     3 * time.Second,
		ThumbnailInterval: 10 * time.Second,
		EventsPerChannel:  50,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Interval <= 0 {
		o.Interval = d.Interval
	}
	if o.HashDistance <= 0 {
		o.HashDistance = d.HashDistance
	}
	if o.BlocklistPoll <= 0 {
		o.BlocklistPoll = d.BlocklistPoll
	}
	if o.ScreenTimeout <= 0 {
		o.ScreenTimeout = d.ScreenTimeout
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = d.FailurePolicy
	}
	if o.FailureAfter <= 0 {
		o.FailureAfter = d.FailureAfter
	}
	if o.DefaultBan <= 0 {
		o.DefaultBan = d.DefaultBan
	}
	if o.FFmpegPath == "" {
		o.FFmpegPath = d.FFmpegPath
	}
	if o.FrameWidth == 0 {
		o.FrameWidth = d.FrameWidth
	}
	if o.DecodeTimeout <= 0 {
		o.DecodeTimeout = d.DecodeTimeout
	}
	if o.ThumbnailInterval <= 0 {
		o.ThumbnailInterval = d.ThumbnailInterval
	}
	if o.EventsPerChannel <= 0 {
		o.EventsPerChannel = d.EventsPerChannel
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

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

	mu       sync.Mutex
	channels map[string]*broadcastState // live broadcasts by channel
	events   map[string][]Event

	actions sync.WaitGroup // takedown calls in flight
}

// broadcastState is one live broadcast's moderation state; guarded by Moderator.mu.
type broadcastState struct {
	b            *ingest.Broadcast
	cleared      bool
	screened     time.Time
	failingSince time.Time
	unscreened   bool
	takenDown    bool
	thumb        []byte
	thumbAt      time.Time
	thumbETag    string

	// Without screeners, thumbnails are decoded on demand: a stale one is
	// asked for on want, and round is closed (and replaced) each time the
	// thumbnail loop has dealt with the asks so far.
	thumbMade time.Time // when thumb was decoded
	want      chan struct{}
	round     chan struct{}
}

var _ ingest.Consumer = (*Moderator)(nil)

// New returns a Moderator. It fails on a bad setting; a missing ffmpeg is
// not an error (see Check) so that the server still starts.
func New(opts Options) (*Moderator, error) {
	opts.fill()
	switch opts.FailurePolicy {
	case FailOpen, FailClosed:
	default:
		return nil, fmt.Errorf("moderation: failure policy %q is neither %q nor %q", opts.FailurePolicy, FailOpen, FailClosed)
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
		if opts.WebhookSecret == "" {
			return nil, errors.New("moderation: a webhook needs a secret to sign its requests")
		}
		m.screeners = append(m.screeners, NewWebhook(opts.WebhookURL, opts.WebhookSecret, opts.HTTPClient))
	}
	m.screeners = append(m.screeners, opts.Screeners...)
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
	return m, nil
}

// Check reports why frames cannot be decoded (ffmpeg missing), or nil.
func (m *Moderator) Check() error { return m.ffmpegErr }

// Screening reports whether any screener is configured.
func (m *Moderator) Screening() bool { return len(m.screeners) > 0 }

// Close waits for takedown calls still in flight. Call it after the hub has
// stopped all broadcasts.
func (m *Moderator) Close() error {
	m.actions.Wait()
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

// Thumbnail returns the newest screened keyframe of the channel's live
// broadcast as JPEG, and when it was received. It never waits; without
// screeners, a thumbnail older than ThumbnailInterval is refreshed in the
// background for the next call.
func (m *Moderator) Thumbnail(channel string) ([]byte, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.channels[channel]
	if st == nil {
		return nil, time.Time{}, false
	}
	m.askThumbLocked(st)
	if st.thumb == nil {
		return nil, time.Time{}, false
	}
	return st.thumb, st.thumbAt, true
}

// askThumbLocked asks the thumbnail loop of a broadcast without screeners for
// a fresh thumbnail if the one it has is missing or stale. It returns the
// channel closed once the loop has dealt with the ask, or nil when there is
// nothing to wait for. m.mu is held.
func (m *Moderator) askThumbLocked(st *broadcastState) <-chan struct{} {
	if st.want == nil || st.takenDown {
		return nil
	}
	if st.thumb != nil && time.Since(st.thumbMade) < m.opts.ThumbnailInterval {
		return nil
	}
	select {
	case st.want <- struct{}{}:
	default:
	}
	return st.round
}

// endRoundLocked tells waiters that the thumbnail loop has dealt with the
// asks made so far. m.mu is held.
func (st *broadcastState) endRoundLocked() {
	close(st.round)
	st.round = make(chan struct{})
}

// Consume implements ingest.Consumer: it samples keyframes into a mailbox and
// screens them in a goroutine of its own, so reading the feed never waits on
// decoding, screening or actions.
func (m *Moderator) Consume(ctx context.Context, b *ingest.Broadcast, feed *ingest.Feed) {
	screening := len(m.screeners) > 0
	st := &broadcastState{b: b, cleared: !m.opts.Gate || !screening}
	if b.Tracks.Video == nil {
		st.cleared = true // nothing to see
	} else if !screening {
		st.want, st.round = make(chan struct{}, 1), make(chan struct{})
	}
	m.mu.Lock()
	m.channels[b.Channel] = st
	m.mu.Unlock()
	m.metrics.live.Add(1)
	defer func() {
		m.mu.Lock()
		if m.channels[b.Channel] == st {
			delete(m.channels, b.Channel)
		}
		m.mu.Unlock()
		m.metrics.live.Add(-1)
	}()

	sampler := NewSampler(m.opts.Interval)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if b.Tracks.Video != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if screening {
				m.screenLoop(wctx, st, sampler)
			} else {
				m.thumbLoop(wctx, st, sampler)
			}
		}()
	}
	// The media path: per unit, one comparison for all but the keyframes,
	// no allocation, no lock of the Moderator's.
	for {
		au, err := feed.Next(ctx)
		if err != nil {
			break
		}
		if au.Kind != ingest.KindVideo || !au.Key {
			continue
		}
		if taken, replaced := sampler.Observe(au); taken && screening {
			m.metrics.sampled.Add(1)
			if replaced {
				m.metrics.superseded.Add(1)
			}
		}
	}
	cancel()
	wg.Wait()
}

// screenLoop screens the samples of one broadcast until ctx is done or the
// broadcast was taken down. It owns the broadcast's decoder.
func (m *Moderator) screenLoop(ctx context.Context, st *broadcastState, sampler *Sampler) {
	b := st.b
	log := m.log.With("channel", b.Channel, "broadcast", b.ID)
	track := lowDelayTrack(b.Tracks.Video, log)
	var dec *Decoder
	defer func() {
		if dec != nil {
			dec.Close()
		}
	}()
	for {
		au, err := sampler.Next(ctx)
		if err != nil {
			return
		}
		start := time.Now()
		jpg, err := m.decode(ctx, &dec, track, au)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.metrics.failure("decoder")
			log.Warn("decoding keyframe failed", "err", err)
			if m.failed(ctx, st, start, log) {
				return
			}
			continue
		}
		m.metrics.decoded.Add(1)
		f := &Frame{Channel: b.Channel, BroadcastID: b.ID, PTS: au.PTS, Received: au.Received, JPEG: jpg}
		if m.screen(ctx, st, f, start, log) {
			return
		}
	}
}

// lowDelayTrack returns the track to give the decoder (see decoderTrack).
func lowDelayTrack(v *ingest.VideoTrack, log *slog.Logger) *ingest.VideoTrack {
	track, err := decoderTrack(v)
	if err != nil {
		// The original SPS still decodes, only with a delay of a few keyframes.
		log.Warn("cannot rewrite SPS for low-delay decoding", "err", err)
		return v
	}
	return track
}

// thumbLoop makes the thumbnails of a broadcast without screeners until ctx
// is done. A decoder running for thumbnails alone would cost a process's
// memory for every live channel all the time, so each frame is decoded by an
// ffmpeg process started for it: the broadcast's first sampled keyframe, and
// then the newest sample whenever a thumbnail is asked for and the one there
// is older than ThumbnailInterval.
func (m *Moderator) thumbLoop(ctx context.Context, st *broadcastState, sampler *Sampler) {
	b := st.b
	log := m.log.With("channel", b.Channel, "broadcast", b.ID)
	track := lowDelayTrack(b.Tracks.Video, log)
	defer func() {
		// Nobody is left to answer: let waiters go, and no longer ask.
		m.mu.Lock()
		st.want = nil
		st.endRoundLocked()
		m.mu.Unlock()
	}()
	au, err := sampler.Next(ctx)
	if err != nil {
		return
	}
	have := true
	var last time.Time // when the last decode started
	for {
		if have {
			m.metrics.sampled.Add(1)
			last = time.Now()
			var dec *Decoder
			jpg, derr := m.decode(ctx, &dec, track, au)
			if dec != nil {
				dec.Close()
			}
			if ctx.Err() != nil {
				return
			}
			if derr != nil {
				m.metrics.failure("decoder")
				log.Warn("decoding keyframe for a thumbnail failed", "err", derr)
			} else {
				m.metrics.decoded.Add(1)
				m.passed(st, &Frame{Channel: b.Channel, BroadcastID: b.ID, PTS: au.PTS, Received: au.Received, JPEG: jpg}, last)
			}
		}
		m.mu.Lock()
		st.endRoundLocked()
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-st.want:
		}
		have = false
		if time.Since(last) >= m.opts.ThumbnailInterval {
			au, have = sampler.TryNext()
		}
	}
}

// decode turns a keyframe into JPEG, (re)starting the decoder as needed.
func (m *Moderator) decode(ctx context.Context, dec **Decoder, track *ingest.VideoTrack, au ingest.AccessUnit) ([]byte, error) {
	if m.ffmpegErr != nil {
		return nil, m.ffmpegErr
	}
	if *dec == nil {
		m.metrics.decoderStarts.Add(1)
		d, err := StartDecoder(DecoderOptions{FFmpegPath: m.opts.FFmpegPath, Codec: track.Codec, MaxWidth: max(m.opts.FrameWidth, 0)})
		if err != nil {
			return nil, err
		}
		*dec = d
	}
	dctx, cancel := context.WithTimeout(ctx, m.opts.DecodeTimeout)
	defer cancel()
	jpg, err := (*dec).Decode(dctx, annexB(track, au))
	if err != nil {
		// Its state is unknown now (a frame may still come out): start afresh.
		(*dec).Close()
		*dec = nil
	}
	return jpg, err
}

// screen runs the screeners on f. It reports whether the broadcast was taken down.
func (m *Moderator) screen(ctx context.Context, st *broadcastState, f *Frame, start time.Time, log *slog.Logger) bool {
	if len(m.screeners) == 0 {
		m.passed(st, f, start)
		return false
	}
	failed := false
	for _, s := range m.screeners {
		sctx, cancel := context.WithTimeout(ctx, m.opts.ScreenTimeout)
		t0 := time.Now()
		v, err := s.Screen(sctx, f)
		cancel()
		m.metrics.screenerTime(s.Name(), time.Since(t0))
		if ctx.Err() != nil {
			return true
		}
		if err != nil {
			failed = true
			m.metrics.failure(s.Name())
			log.Warn("screener failed", "screener", s.Name(), "err", err)
			continue
		}
		if v.Screener == "" {
			v.Screener = s.Name()
		}
		switch v.Action {
		case Block:
			m.metrics.verdict(Block)
			m.metrics.screened(time.Since(f.Received))
			ban := v.Ban
			if ban <= 0 {
				ban = m.opts.DefaultBan
			}
			reason := v.Reason
			if reason == "" {
				reason = "blocked by " + v.Screener
			}
			log.Warn("broadcast blocked", "screener", v.Screener, "reason", reason, "ban", ban,
				"keyframe_time", f.PTS, "latency", time.Since(f.Received))
			m.takeDown(ctx, st, Event{Action: Block, Reason: reason, Screener: v.Screener, Ban: ban, KeyframeTime: f.PTS})
			return true
		case Flag:
			m.metrics.verdict(Flag)
			ev := m.record(st, Event{Action: Flag, Reason: v.Reason, Screener: v.Screener, KeyframeTime: f.PTS})
			log.Warn("broadcast flagged", "screener", v.Screener, "reason", v.Reason, "keyframe_time", f.PTS)
			if m.opts.OnFlag != nil {
				m.opts.OnFlag(ev)
			}
		default:
			m.metrics.verdict(Allow)
		}
	}
	if failed {
		return m.failed(ctx, st, start, log)
	}
	m.metrics.screened(time.Since(f.Received))
	m.passed(st, f, start)
	return false
}

// passed records a frame that passed screening: it clears the gate and
// becomes the thumbnail.
func (m *Moderator) passed(st *broadcastState, f *Frame, start time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.takenDown {
		return
	}
	st.cleared, st.screened, st.failingSince, st.unscreened = true, time.Now(), time.Time{}, false
	st.setThumb(f)
	st.thumbMade = time.Now()
}

func (st *broadcastState) setThumb(f *Frame) {
	sum := sha256.Sum256(f.JPEG)
	st.thumb, st.thumbAt, st.thumbETag = f.JPEG, f.Received, `"`+hex.EncodeToString(sum[:8])+`"`
}

// failed accounts for a frame that could not be screened, started at start,
// and applies the failure policy once failures have lasted FailureAfter. It
// reports whether the broadcast was taken down.
func (m *Moderator) failed(ctx context.Context, st *broadcastState, start time.Time, log *slog.Logger) bool {
	if len(m.screeners) == 0 {
		return false // only thumbnails were lost
	}
	m.mu.Lock()
	if st.failingSince.IsZero() {
		st.failingSince = start
	}
	since := st.failingSince
	due := time.Since(since) >= m.opts.FailureAfter
	openNow := false
	if due && m.opts.FailurePolicy == FailOpen && !st.unscreened {
		st.unscreened, st.cleared, openNow = true, true, true
	}
	m.mu.Unlock()
	if !due {
		return false
	}
	if m.opts.FailurePolicy == FailOpen {
		if openNow {
			m.metrics.failOpen.Add(1)
			log.Error("screening unavailable: broadcast continues unscreened (failure policy open)", "failing_since", since)
		}
		return false
	}
	m.metrics.failClosed.Add(1)
	log.Error("screening unavailable: taking broadcast down (failure policy closed)", "failing_since", since)
	m.takeDown(ctx, st, Event{Action: Block, Reason: ReasonUnavailable, Screener: "failure-policy"})
	return true
}

// record appends an event to the channel's history and returns it completed.
func (m *Moderator) record(st *broadcastState, ev Event) Event {
	ev.Time, ev.Channel, ev.BroadcastID = time.Now(), st.b.Channel, st.b.ID
	m.mu.Lock()
	defer m.mu.Unlock()
	evs := append(m.events[ev.Channel], ev)
	if len(evs) > m.opts.EventsPerChannel {
		evs = append([]Event(nil), evs[len(evs)-m.opts.EventsPerChannel:]...)
	}
	m.events[ev.Channel] = evs
	return ev
}

// takeDown ends the broadcast through the Enforcer and OnTakedown. The calls
// run in a goroutine tracked by Close, because the hub may end the feed (and
// so wait for this broadcast's Consume) before TakeDown returns.
func (m *Moderator) takeDown(ctx context.Context, st *broadcastState, ev Event) {
	m.mu.Lock()
	st.takenDown, st.cleared, st.thumb = true, false, nil
	m.mu.Unlock()
	ev = m.record(st, ev)
	m.metrics.takedown(ev.Screener)
	b := st.b
	done := make(chan struct{})
	m.actions.Add(1)
	go func() {
		defer m.actions.Done()
		defer close(done)
		if m.opts.Enforcer == nil {
			m.log.Error("no enforcer: blocked broadcast stays up", "channel", b.Channel, "broadcast", b.ID)
		} else if err := m.opts.Enforcer.TakeDown(b.Channel, ev.Reason, ev.Ban); err != nil {
			m.log.Error("taking broadcast down failed", "channel", b.Channel, "broadcast", b.ID, "err", err)
		}
		if m.opts.OnTakedown != nil {
			m.opts.OnTakedown(b.Channel, b.ID, ev.Reason)
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
