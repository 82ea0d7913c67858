package chat

import (
	"log/slog"
	"sync"
	"time"
)

// logSampler lets through at most one line per key per period and counts the rest, so a
// client that provokes refusals does not decide how much the server logs.
type logSampler struct {
	log    *slog.Logger
	period time.Duration

	mu   sync.Mutex
	keys map[string]*sampled
}

type sampled struct {
	last       time.Time
	suppressed int
}

func newLogSampler(log *slog.Logger, period time.Duration) *logSampler {
	return &logSampler{log: log, period: period, keys: make(map[string]*sampled)}
}

// Warn logs msg with args unless a line with the same key was logged within the period;
// the line that gets through says how many were left out before it.
func (l *logSampler) Warn(key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	st := l.keys[key]
	if st == nil {
		st = &sampled{}
		l.keys[key] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.period {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
