package ingest

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// addrKey is the unit per-address limits count by: the IPv4 address, or the
// /64 network of an IPv6 address (one subscriber's usual allocation, so one
// host cannot escape a limit by rotating through its own addresses).
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// remoteIP is the connection's remote address without the port.
func remoteIP(nc net.Conn) string {
	addr := nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// authBackoff slows down key guessing: after Free failed publishes from one
// address, each further failure locks the address out for twice as long as
// the last (1 s, 2 s, 4 s, ... up to Max). A successful publish clears it; an
// address that stops failing is forgotten after forgetAfter.
type authBackoff struct {
	free int
	max  time.Duration

	mu      sync.Mutex
	entries map[string]*backoffEntry
}

type backoffEntry struct {
	fails int
	until time.Time
	last  time.Time
}

const (
	backoffBase       = time.Second
	backoffForget     = 15 * time.Minute
	backoffMaxEntries = 8192 // addresses remembered; the least recently failing go first
)

func newAuthBackoff(free int, max time.Duration) *authBackoff {
	return &authBackoff{free: free, max: max, entries: make(map[string]*backoffEntry)}
}

// locked reports whether key may not try a publish now, and for how long.
func (b *authBackoff) locked(key string, now time.Time) (time.Duration, bool) {
	if b == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil || !now.Before(e.until) {
		return 0, false
	}
	return e.until.Sub(now), true
}

// failed records a refused key from key and returns the lockout it now has (0: none yet).
func (b *authBackoff) failed(key string, now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil || now.Sub(e.last) > backoffForget {
		if len(b.entries) >= backoffMaxEntries {
			b.pruneLocked(now)
		}
		e = &backoffEntry{}
		b.entries[key] = e
	}
	e.fails++
	e.last = now
	over := e.fails - b.free
	if over <= 0 {
		return 0
	}
	lock := b.max
	if over <= 30 && backoffBase<<(over-1) < b.max {
		lock = backoffBase << (over - 1)
	}
	e.until = now.Add(lock)
	return lock
}

// succeeded forgets key's failures.
func (b *authBackoff) succeeded(key string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, key)
}

// pruneLocked makes room: forgotten entries go first, then those not locked
// out, then any (Go's map order makes the choice arbitrary).
func (b *authBackoff) pruneLocked(now time.Time) {
	for pass := 0; pass < 3 && len(b.entries) >= backoffMaxEntries/2; pass++ {
		for k, e := range b.entries {
			stale := now.Sub(e.last) > backoffForget
			unlocked := !now.Before(e.until)
			if pass == 2 || (pass == 0 && stale) || (pass == 1 && unlocked) {
				delete(b.entries, k)
				if len(b.entries) < backoffMaxEntries/2 {
					return
				}
			}
		}
	}
}

// logSampler bounds the log lines about refusals, so that whoever causes them
// does not decide how much onair writes: per reason, the first sampleBurst lines
// of each sampleWindow are written, the rest only counted, and the next line
// written says how many were left out. Metrics count every refusal.
type logSampler struct {
	log *slog.Logger

	mu      sync.Mutex
	reasons map[string]*sampleState
}

type sampleState struct {
	start      time.Time
	written    int
	suppressed int
}

const (
	sampleWindow = 10 * time.Second
	sampleBurst  = 5
)

// warn writes a refusal line for reason, unless too many were written lately.
func (s *logSampler) warn(reason, msg string, args ...any) {
	now := time.Now()
	s.mu.Lock()
	if s.reasons == nil {
		s.reasons = make(map[string]*sampleState)
	}
	st := s.reasons[reason]
	if st == nil {
		st = &sampleState{}
		s.reasons[reason] = st
	}
	if now.Sub(st.start) >= sampleWindow {
		st.start, st.written = now, 0
	}
	if st.written >= sampleBurst {
		st.suppressed++
		s.mu.Unlock()
		return
	}
	st.written++
	left := st.suppressed
	st.suppressed = 0
	s.mu.Unlock()
	if left > 0 {
		args = append(args, "suppressed_since_last", left)
	}
	s.log.Warn(msg, args...)
}
