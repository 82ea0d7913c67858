package moderation

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// SampleMode says which frames of a broadcast may be screened.
type SampleMode string

// Sample modes.
const (
	// SampleAny screens frames at unpredictable points of the stream,
	// between keyframes as well as on them: a publisher cannot choose which
	// frames are looked at. Each sample costs decoding the frames from the
	// keyframe before it (the ones nothing else refers to are left out).
	SampleAny SampleMode = "any"
	// SampleKeyframes screens keyframes only: the cheapest, and dodged by a
	// stream that shows something harmless on exactly its keyframes.
	SampleKeyframes SampleMode = "keyframes"
)

// maxPrefixFrames bounds the frames a sample may carry from its keyframe: a
// stream with keyframes further apart is screened within its first 10 s
// (at 30 fps) after each keyframe, and on its keyframes.
const maxPrefixFrames = 300

// firstWindow bounds when the first frame between keyframes is screened,
// from the first keyframe, however long the interval: a stream that hides
// behind its first keyframe is looked at within its first GOP.
const firstWindow = time.Second

// Sample is what is decoded for one screening: a keyframe, and when the
// frame to screen lies after it, the frames up to that one in decode order.
type Sample struct {
	// Frames starts with a keyframe and ends with the frame to screen.
	// Frames that no later frame refers to are left out, except the last.
	Frames []ingest.AccessUnit
}

// Target returns the frame to screen.
func (s Sample) Target() ingest.AccessUnit { return s.Frames[len(s.Frames)-1] }

// Sampler picks the frames of one broadcast to screen: the first keyframe
// (so that a gated broadcast is cleared quickly), then, in SampleAny mode,
// one frame at a random point of each interval of media time (the first
// within firstWindow), or in SampleKeyframes mode one keyframe per interval.
//
// A decoder told not to reorder (see withoutReordering) outputs a frame as
// soon as it is decoded, unless it is shown before a frame already output
// (a B-frame), which it drops. So a frame can be screened from a decoded
// GOP prefix only if its PTS is above every earlier frame's: the Sampler
// picks among those. (Were the timestamps lying, the decoder would show the
// last frame it did output: still one between keyframes.)
//
// It hands samples over through a one-slot mailbox: when screening is busy,
// a newer sample replaces the waiting one, because a verdict on an old frame
// is worth less than one on the newest, and a queue would grow without bound
// behind a slow hook. A sample is taken out only when a decoder starts on
// it, so a sample replaced while its broadcast waited for a decoder is never
// decoded. Without screeners, the mailbox holds the newest keyframe for the
// next thumbnail request, undecoded.
//
// Observe is called by the media path and never blocks; Next by the screener.
type Sampler struct {
	interval time.Duration
	mode     SampleMode
	rand     *rand.Rand
	// disposable reports whether no other frame refers to a frame.
	disposable func(ingest.AccessUnit) bool

	// Owned by Observe's caller.
	started bool
	last    time.Duration // SampleKeyframes: media time of the last sample taken
	window  time.Duration // SampleAny: start of the current window
	due     time.Duration // SampleAny: the frame to screen is the first shown one from here
	gop     []ingest.AccessUnit
	shared  bool // gop's array is referred to by a sample: do not write over it
	maxPTS  time.Duration
	longGOP bool

	mu      sync.Mutex
	pending Sample
	has     bool
	ready   chan struct{}
}

// NewSampler returns a Sampler taking keyframes only, one per interval.
func NewSampler(interval time.Duration) *Sampler {
	return NewModeSampler(interval, SampleKeyframes, nil)
}

// NewModeSampler returns a Sampler in the given mode. disposable tells the
// frames no other frame refers to (nil: none are).
func NewModeSampler(interval time.Duration, mode SampleMode, disposable func(ingest.AccessUnit) bool) *Sampler {
	if disposable == nil {
		disposable = func(ingest.AccessUnit) bool { return false }
	}
	return &Sampler{
		interval: interval, mode: mode, disposable: disposable,
		rand:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		ready: make(chan struct{}, 1),
	}
}

// Observe looks at one access unit. It reports whether a sample was taken
// and whether that replaced a sample not yet screened.
func (s *Sampler) Observe(au ingest.AccessUnit) (taken, replaced bool) {
	if au.Kind != ingest.KindVideo {
		return false, false
	}
	if s.mode != SampleAny {
		return s.observeKeyframe(au)
	}
	if au.Key {
		if s.shared {
			s.gop, s.shared = nil, false
		}
		s.gop = append(s.gop[:0], au)
		s.maxPTS = au.PTS
		if !s.started {
			s.started, s.window, s.shared = true, au.DTS, true
			s.due = au.DTS + s.randIn(min(s.interval, firstWindow))
			return s.put(Sample{Frames: s.gop[:1:1]})
		}
	} else {
		if !s.started || len(s.gop) == 0 {
			return false, false
		}
		if len(s.gop) >= maxPrefixFrames {
			s.longGOP = true
			return false, false
		}
		shown := au.PTS > s.maxPTS
		if !shown && s.disposable(au) {
			return false, false // neither output nor needed to decode what is
		}
		if shown {
			s.maxPTS = au.PTS
		}
		s.gop = append(s.gop, au)
		if !shown {
			return false, false
		}
	}
	if au.DTS < s.due {
		return false, false
	}
	// Next window: the one after the current, or, after a gap in the
	// timestamps (a reconnect), the one starting now.
	s.window += s.interval
	if au.DTS >= s.window+s.interval || au.DTS < s.window-s.interval {
		s.window = au.DTS
	}
	s.due = s.window + s.randIn(s.interval)
	s.shared = true
	return s.put(Sample{Frames: s.gop[:len(s.gop):len(s.gop)]})
}

// observeKeyframe is Observe in SampleKeyframes mode.
func (s *Sampler) observeKeyframe(au ingest.AccessUnit) (taken, replaced bool) {
	if !au.Key {
		return false, false
	}
	// A tenth of the interval of slack: a 2 s GOP with millisecond-rounded
	// RTMP timestamps should be sampled every 2 s, not every 4 s.
	if s.started && au.DTS-s.last < s.interval-s.interval/10 && au.DTS >= s.last {
		return false, false
	}
	s.started, s.last = true, au.DTS
	return s.put(Sample{Frames: []ingest.AccessUnit{au}})
}

// GOPTooLong reports whether frames went unscreened because keyframes were
// further apart than a sample can reach (maxPrefixFrames). Like Observe, it
// is for the media path's goroutine.
func (s *Sampler) GOPTooLong() bool { return s.longGOP }

// randIn returns a random duration in [0, d).
func (s *Sampler) randIn(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rand.Int64N(int64(d)))
}

// put places a sample in the mailbox.
func (s *Sampler) put(smp Sample) (taken, replaced bool) {
	s.mu.Lock()
	replaced = s.has
	s.pending, s.has = smp, true
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true, replaced
}

// TryNext returns the waiting sample, if there is one, without waiting.
func (s *Sampler) TryNext() (Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.has {
		return Sample{}, false
	}
	smp := s.pending
	s.pending, s.has = Sample{}, false
	return smp, true
}

// Pending reports whether a sample is waiting.
func (s *Sampler) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.has
}

// Wait returns once a sample is waiting, or ctx.Err() when ctx is done. The
// sample stays in the mailbox (and may still be replaced) until TryNext.
func (s *Sampler) Wait(ctx context.Context) error {
	for !s.Pending() {
		select {
		case <-s.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Next waits for a sample and returns it; it returns ctx.Err() when ctx is done.
func (s *Sampler) Next(ctx context.Context) (Sample, error) {
	for {
		if smp, ok := s.TryNext(); ok {
			return smp, nil
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		}
	}
}
