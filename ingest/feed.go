package ingest

import (
	"context"
	"sync"
)

// Feed is a bounded queue of access units from one broadcast to one consumer.
// The publisher never waits on it: when the consumer falls behind and the queue
// is full, units are dropped until the next video keyframe (or, for audio-only
// broadcasts, the oldest ones are discarded), so the consumer resumes on a clean
// decoding point.
type Feed struct {
	mu       sync.Mutex
	buf      []AccessUnit // ring; grows up to size as the consumer lags
	size     int
	head, n  int
	hasVideo bool
	skipping bool // dropping until the next keyframe after an overflow
	ended    bool
	end      *EndError // why, once ended
	dropped  uint64
	wake     chan struct{}
}

// NewFeed returns a feed holding at most size units.
func NewFeed(size int, tracks Tracks) *Feed {
	if size < 1 {
		size = 1
	}
	// A consumer that keeps up holds a few units at a time: the ring starts
	// small and doubles only when one lags.
	return &Feed{buf: make([]AccessUnit, min(size, initialFeedRing)), size: size, hasVideo: tracks.Video != nil, wake: make(chan struct{}, 1)}
}

// initialFeedRing is how many units a new feed has room for before it grows.
const initialFeedRing = 32

// Push queues au without blocking. It reports false when au was dropped.
func (f *Feed) Push(au AccessUnit) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return false
	}
	if f.skipping {
		if !(au.Kind == KindVideo && au.Key) {
			f.dropped++
			return false
		}
		f.skipping = false
	}
	if f.n == len(f.buf) && len(f.buf) < f.size {
		ring := make([]AccessUnit, min(2*len(f.buf), f.size))
		k := copy(ring, f.buf[f.head:])
		copy(ring[k:], f.buf[:f.head])
		f.buf, f.head = ring, 0
	}
	if f.n == len(f.buf) {
		if f.hasVideo {
			// Throw away what is queued too: it would decode badly without what we drop.
			f.dropped += uint64(f.n)
			clear(f.buf) // release the dropped frames' memory now, not when overwritten
			f.head, f.n = 0, 0
			if !(au.Kind == KindVideo && au.Key) {
				f.skipping = true
				f.dropped++
				return false
			}
		} else {
			f.head = (f.head + 1) % len(f.buf)
			f.n--
			f.dropped++
		}
	}
	f.buf[(f.head+f.n)%len(f.buf)] = au
	f.n++
	// Waking a consumer costs a goroutine switch, often a thread wake-up too.
	// With video, audio frames wait for the next video frame (the consumers
	// are paced by video anyway), or until a few have queued up.
	if !f.hasVideo || au.Kind == KindVideo || f.n >= lazyWakeUnits {
		f.signal()
	}
	return true
}

// lazyWakeUnits is how many units may queue on a feed with video before the
// consumer is woken without a video frame (about 170 ms of 48 kHz AAC).
const lazyWakeUnits = 8

// End marks the feed ended for reason; once the queue is drained, Next returns
// an *EndError carrying reason and detail (errors.Is(err, ErrEnded) holds).
func (f *Feed) End(reason EndReason, detail string) {
	f.mu.Lock()
	if !f.ended {
		f.ended = true
		f.end = &EndError{Reason: reason, Detail: detail}
	}
	f.mu.Unlock()
	f.signal()
}

// Dropped reports how many units were discarded because the consumer was slow.
func (f *Feed) Dropped() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Next returns the next unit, waiting for one. After End it returns the
// feed's *EndError (which is ErrEnded) and ctx.Err() when ctx is done. On a feed with video, a Next already waiting is
// woken by a video unit, not by each audio unit: queued audio is returned with
// the next video unit (or once a few audio units have queued up), in order.
func (f *Feed) Next(ctx context.Context) (AccessUnit, error) {
	for {
		f.mu.Lock()
		if f.n > 0 {
			au := f.buf[f.head]
			f.buf[f.head] = AccessUnit{}
			f.head = (f.head + 1) % len(f.buf)
			f.n--
			f.mu.Unlock()
			return au, nil
		}
		end := f.end
		f.mu.Unlock()
		if end != nil {
			return AccessUnit{}, end
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			return AccessUnit{}, ctx.Err()
		}
	}
}

func (f *Feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}
