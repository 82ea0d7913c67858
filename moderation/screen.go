package moderation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/onairhq/onair/ingest"
)

// screenLoop screens the samples of one broadcast until ctx is done or the
// broadcast was taken down. Frames are decoded by the shared pool; after
// decoding failures the broadcast asks less often (see retryDelay), so a
// stream whose keyframes hang the decoder cannot keep the workers from
// everyone else's.
func (m *Moderator) screenLoop(ctx context.Context, st *broadcastState, log *slog.Logger) {
	fails := 0
	for {
		if err := st.sampler.Wait(ctx); err != nil {
			return
		}
		over, decodeFailed := m.screenNext(ctx, st, log)
		if over {
			return
		}
		if !decodeFailed {
			fails = 0
			continue
		}
		fails++
		t := time.NewTimer(m.retryDelay(fails))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// retryDelay is how long a broadcast waits before it asks for a decode
// again after fails decoding failures in a row: nothing after the first,
// then the interval doubling, at most half of FailureAfter, so the failure
// policy still applies on time.
func (m *Moderator) retryDelay(fails int) time.Duration {
	if fails < 2 {
		return 0
	}
	d := m.opts.Interval << min(fails-2, 8)
	return min(d, max(m.opts.FailureAfter/2, m.opts.Interval))
}

// screenNext decodes and screens the broadcast's newest sample. It reports
// whether screening of the broadcast is over (taken down, or ctx done) and
// whether decoding failed. A panic counts as a screening failure of the
// frame; the loop goes on with the next one.
func (m *Moderator) screenNext(ctx context.Context, st *broadcastState, log *slog.Logger) (over, decodeFailed bool) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			m.metrics.panicked("screening")
			log.Error("screening panicked", "panic", r, "stack", string(debug.Stack()))
			over = m.failed(ctx, st, start, log)
		}
	}()
	b := st.b
	m.mu.Lock()
	first := st.screened.IsZero()
	m.mu.Unlock()
	var au ingest.AccessUnit
	req := &decodeRequest{
		key:     st.key,
		urgent:  first, // the gate may hold the broadcast unlisted until then
		expires: start.Add(m.opts.FailureAfter),
		take: func() ([]byte, bool) {
			smp, ok := st.sampler.TryNext()
			if !ok {
				return nil, false
			}
			au = smp.Target()
			return annexB(st.track, smp), true
		},
	}
	jpg, err := m.decode(ctx, req)
	if ctx.Err() != nil {
		return true, false
	}
	if errors.Is(err, errNoFrame) {
		return false, false
	}
	if err != nil {
		m.metrics.failure("decoder")
		log.Warn("decoding sampled frames failed", "err", err)
		return m.failed(ctx, st, start, log), true
	}
	m.metrics.decoded.Add(1)
	f := &Frame{Channel: b.Channel, BroadcastID: b.ID, PTS: au.PTS, Received: au.Received, JPEG: jpg, Keyframe: au.Key}
	if !au.Key {
		m.compareWithKeyframe(st, f, req.keyImg, log)
	}
	return m.screen(ctx, st, f, start, log), false
}

// decode has the pool decode req, unless frames cannot be decoded at all.
// A codec the decoder does not take, or a frame size it must not be given,
// never reaches the pool, where its failure would count against a worker
// shared with everyone.
func (m *Moderator) decode(ctx context.Context, req *decodeRequest) ([]byte, error) {
	err := m.ffmpegErr
	if err == nil {
		err = undecodable(req.key)
	}
	if err != nil {
		req.take() // the sample is spent: the next try is on a newer one
		return nil, err
	}
	return m.pool.decode(ctx, req)
}

// screen runs the screeners on f. It reports whether the broadcast was taken down.
func (m *Moderator) screen(ctx context.Context, st *broadcastState, f *Frame, start time.Time, log *slog.Logger) bool {
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
			ban := m.banFor(v, log)
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
	m.passed(st, f)
	return false
}

// banFor returns the republish ban of a block verdict: the verdict's own
// within MaxBan, else DefaultBan. A ban a screener got wrong never turns into
// no ban or an unbounded one; it is logged.
func (m *Moderator) banFor(v Verdict, log *slog.Logger) time.Duration {
	switch {
	case v.Ban == 0:
		return m.opts.DefaultBan
	case v.Ban < 0:
		log.Warn("screener asked for a negative ban: applying the default ban", "screener", v.Screener, "asked", v.Ban, "ban", m.opts.DefaultBan)
		return m.opts.DefaultBan
	case v.Ban > m.opts.MaxBan:
		log.Warn("screener asked for a ban longer than the longest allowed: cut to it", "screener", v.Screener, "asked", v.Ban, "ban", m.opts.MaxBan)
		return m.opts.MaxBan
	}
	return v.Ban
}

// passed records a frame that passed screening: it clears the gate and
// becomes the thumbnail.
func (m *Moderator) passed(st *broadcastState, f *Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.takenDown {
		return
	}
	st.cleared, st.screened, st.failingSince, st.unscreened = true, time.Now(), time.Time{}, false
	st.setThumb(f.JPEG, f.Received)
}

// setThumb makes img, of a keyframe received at, the thumbnail. m.mu is held.
func (st *broadcastState) setThumb(img []byte, at time.Time) {
	sum := sha256.Sum256(img)
	st.thumb, st.thumbAt, st.thumbETag = img, at, `"`+hex.EncodeToString(sum[:8])+`"`
	st.thumbMade = time.Now()
}

// failed accounts for a frame that could not be screened, started at start,
// and applies the failure policy once failures have lasted FailureAfter. It
// reports whether the broadcast was taken down.
func (m *Moderator) failed(ctx context.Context, st *broadcastState, start time.Time, log *slog.Logger) bool {
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
			// In the channel's events, so the API shows which channels ran unscreened.
			m.flag(st, Event{Action: Flag, Reason: ReasonUnscreened, Screener: "failure-policy"}, log)
		}
		return false
	}
	m.metrics.failClosed.Add(1)
	log.Error("screening unavailable: taking broadcast down (failure policy closed)", "failing_since", since)
	m.takeDown(ctx, st, Event{Action: Block, Reason: ReasonUnavailable, Screener: "failure-policy"})
	return true
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
	log := m.log.With("channel", b.Channel, "broadcast", b.ID)
	done := make(chan struct{})
	m.actions.Add(1)
	go func() {
		defer m.actions.Done()
		defer close(done)
		defer m.recoverPanic("takedown", log)
		if m.opts.Enforcer == nil {
			log.Error("no enforcer: blocked broadcast stays up")
		} else if err := m.opts.Enforcer.TakeDown(b.Channel, ev.Reason, ev.Ban); err != nil {
			log.Error("taking broadcast down failed", "err", err)
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

// Keyframes that differ sharply from the frames between them are how a
// stream dodges screening that looks at keyframes only (something harmless
// drawn on exactly the keyframes). A sample is a split when its keyframe and
// its screened frame are more than splitDistance bits apart in perceptual
// hash while the screened frame stays close to the previous sample's (at
// most half that distance): the stream is steady between keyframes, and only
// its keyframes differ. Motion or a scene cut changes the frames between
// keyframes too, so it does not count. splitsToFlag splits among a
// broadcast's last splitWindow samples flag it, once.
const (
	splitDistance = 24
	splitWindow   = 5
	splitsToFlag  = 3
)

// ReasonSplitKeyframes is the reason of the flag raised for such a broadcast.
const ReasonSplitKeyframes = "keyframes differ sharply from the frames between them (a way to dodge keyframe-only screening)"

// splitTracker follows one broadcast's samples for splits.
type splitTracker struct {
	prev    uint64 // hash of the previous sample's screened frame
	hasPrev bool
	recent  []bool // the last samples, split or not
	flagged bool
}

// observe records a sample's keyframe and screened-frame hashes and reports
// the key-to-frame distance, the splits among the recent samples, and
// whether the broadcast is to be flagged now.
func (t *splitTracker) observe(key, frame uint64) (dist, splits int, flag bool) {
	dist = Distance(key, frame)
	split := t.hasPrev && dist > splitDistance && 2*Distance(t.prev, frame) <= dist
	t.prev, t.hasPrev = frame, true
	t.recent = append(t.recent, split)
	if len(t.recent) > splitWindow {
		t.recent = t.recent[1:]
	}
	for _, s := range t.recent {
		if s {
			splits++
		}
	}
	if splits >= splitsToFlag && !t.flagged {
		t.flagged, flag = true, true
	}
	return dist, splits, flag
}

// compareWithKeyframe hashes the sample's keyframe image and its screened
// frame f, and flags the broadcast once its keyframes keep differing from
// what is shown between them.
func (m *Moderator) compareWithKeyframe(st *broadcastState, f *Frame, keyJPEG []byte, log *slog.Logger) {
	ki, err := (&Frame{JPEG: keyJPEG}).Image()
	if err != nil {
		return
	}
	fi, err := f.Image()
	if err != nil {
		return
	}
	m.mu.Lock()
	d, n, flag := st.splits.observe(HashImage(ki), HashImage(fi))
	m.mu.Unlock()
	if flag {
		m.flag(st, Event{Action: Flag, Reason: ReasonSplitKeyframes, Screener: "sampler", KeyframeTime: f.PTS},
			log.With("distance", d, "splits", n))
	}
}
