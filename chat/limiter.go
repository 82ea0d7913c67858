package chat

import (
	"sync"
	"time"
)

// Limiter is a token bucket: up to n events per window, refilled smoothly.
// It is safe for concurrent use (one Limiter is shared by all connections of an IP).
type Limiter struct {
	mu     sync.Mutex
	n      float64
	per    time.Duration
	tokens float64
	last   time.Time
}

// NewLimiter allows n events per window.
func NewLimiter(n int, window time.Duration) *Limiter {
	return &Limiter{n: float64(n), per: window, tokens: float64(n)}
}

// Allow takes one token at now. When none is left it returns false and how long until one is.
func (l *Limiter) Allow(now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	need := (1 - l.tokens) * float64(l.per) / l.n
	return false, time.Duration(need)
}

// Undo returns a token taken by Allow, for an event refused by a later check.
func (l *Limiter) Undo() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tokens+1 <= l.n {
		l.tokens++
	}
}

func (l *Limiter) refill(now time.Time) {
	if !l.last.IsZero() {
		l.tokens += float64(now.Sub(l.last)) * l.n / float64(l.per)
		if l.tokens > l.n {
			l.tokens = l.n
		}
	}
	l.last = now
}
