package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// shard paces a share of the publishers from one goroutine: at every tick
// it writes each publisher's due messages with non-blocking writes. A few
// shards (one per CPU) serve any number of publishers; nothing runs per
// message or per publisher besides each connection's reader.
type shard struct {
	tick      time.Duration
	lateAfter time.Duration

	mu       sync.Mutex
	incoming []*publisher
	closed   bool // run has returned: no more publishers

	pubs   []*publisher // owned by the shard goroutine
	maxLag atomic.Int64 // ns: the longest a tick came later than planned
}

// add hands a confirmed publisher to the shard; it is served from the
// next tick. It reports false once the shard has stopped.
func (s *shard) add(p *publisher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.incoming = append(s.incoming, p)
	return true
}

// run serves the shard's publishers until ctx ends and returns the ones
// still live, for the caller to stop.
func (s *shard) run(ctx context.Context) []*publisher {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.closed = true
			s.pubs = append(s.pubs, s.incoming...)
			s.incoming = nil
			s.mu.Unlock()
			return s.pubs
		case now := <-t.C:
			now = time.Now() // the tick's own time can be stale under load
			lag := max(now.Sub(last)-s.tick, 0)
			if int64(lag) > s.maxLag.Load() {
				s.maxLag.Store(int64(lag))
			}
			last = now
			s.mu.Lock()
			s.pubs = append(s.pubs, s.incoming...)
			s.incoming = s.incoming[:0]
			s.mu.Unlock()
			live := s.pubs[:0]
			for _, p := range s.pubs {
				if p.service(now, lag, s.lateAfter) {
					live = append(live, p)
				}
			}
			clear(s.pubs[len(live):])
			s.pubs = live
		}
	}
}
