package moderation

import (
	"context"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// Sampler picks the keyframes of one broadcast to screen: the first, then one
// per interval of media time. It hands them over through a one-slot mailbox:
// when screening is busy, a newer sample replaces the waiting one, because a
// verdict on an old frame is worth less than one on the newest, and a queue
// would grow without bound behind a slow hook. A sample is taken out only
// when a decoder starts on it, so a frame replaced while its broadcast waited
// for a decoder is never decoded. Without screeners, the mailbox holds the
// newest keyframe for the next thumbnail request, undecoded.
//
// Observe is called by the media path and never blocks; Next by the screener.
type Sampler struct {
	interval time.Duration
	last     time.Duration // media time of the last sample taken
	taken    bool

	mu      sync.Mutex
	pending ingest.AccessUnit
	has     bool
	ready   chan struct{}
}

// NewSampler returns a Sampler taking one keyframe per interval.
func NewSampler(interval time.Duration) *Sampler {
	return &Sampler{interval: interval, ready: make(chan struct{}, 1)}
}

// Observe looks at one access unit. It reports whether the unit was taken as
// a sample and whether that replaced a sample not yet screened.
func (s *Sampler) Observe(au ingest.AccessUnit) (taken, replaced bool) {
	if au.Kind != ingest.KindVideo || !au.Key {
		return false, false
	}
	// A tenth of the interval of slack: a 2 s GOP with millisecond-rounded
	// RTMP timestamps should be sampled every 2 s, not every 4 s.
	if s.taken && au.DTS-s.last < s.interval-s.interval/10 && au.DTS >= s.last {
		return false, false
	}
	s.taken, s.last = true, au.DTS
	s.mu.Lock()
	replaced = s.has
	s.pending, s.has = au, true
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true, replaced
}

// TryNext returns the waiting sample, if there is one, without waiting.
func (s *Sampler) TryNext() (ingest.AccessUnit, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.has {
		return ingest.AccessUnit{}, false
	}
	au := s.pending
	s.pending, s.has = ingest.AccessUnit{}, false
	return au, true
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
func (s *Sampler) Next(ctx context.Context) (ingest.AccessUnit, error) {
	for {
		if au, ok := s.TryNext(); ok {
			return au, nil
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return ingest.AccessUnit{}, ctx.Err()
		}
	}
}
