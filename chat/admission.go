package chat

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Who may open a connection: the client's address behind trusted proxies, the page's
// origin, and what each address is allowed (handshakes per minute, open connections).

// Reasons a connection is refused, as labels of onair_chat_refused_connections_total.
const (
	refusedUpgradeRate    = "upgrade_rate"
	refusedUnknownChannel = "unknown_channel"
	refusedOrigin         = "origin"
	refusedTokenInURL     = "token_in_url"
	refusedTooMany        = "too_many_connections"
	refusedBanned         = "banned"
)

var refusalReasons = []string{refusedUpgradeRate, refusedUnknownChannel, refusedOrigin, refusedTokenInURL, refusedTooMany, refusedBanned}

// refuse counts a refused connection and logs it, sampled per reason.
func (s *Server) refuse(reason, ip, channel string, args ...any) {
	s.metrics.refusedConn(reason)
	s.refusals.Warn(reason, "chat: connection refused", append([]any{"reason", reason, "ip", ip, "room", channel}, args...)...)
}

// clientIP returns the key of the request's client for per-IP limits and bans: its address
// (behind trusted proxies, the one they name), or for IPv6 its /64, which one subscriber
// usually holds whole.
func (s *Server) clientIP(r *http.Request) string {
	a, ok := s.resolver.Client(r)
	if !ok {
		return "unknown"
	}
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// ipTag is a keyed hash of ip: the same on every node sharing the secret, so IP bans work
// across nodes without raw addresses being stored in Redis or sent around.
func (s *Server) ipTag(ip string) string {
	m := hmac.New(sha256.New, append([]byte("onair-chat-ip\n"), s.opts.Secret...))
	m.Write([]byte(ip))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// originPolicy decides which pages may open chat from their visitors' browsers. Chat uses no
// cookies, but an open policy lets any site make its visitors' browsers connect and post
// from their addresses.
type originPolicy struct {
	any     bool
	origins map[string]bool // normalized
}

func newOriginPolicy(allowed []string) originPolicy {
	p := originPolicy{origins: make(map[string]bool)}
	for _, o := range allowed {
		if o == "*" {
			p.any = true
		} else if n, err := normalizeOrigin(o); err == nil {
			p.origins[n] = true
		}
	}
	return p
}

// allows reports whether r may be upgraded: it comes from no browser (no Origin), from an
// allowed origin, or from a page of the host it was sent to.
func (p originPolicy) allows(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	n, err := normalizeOrigin(origin)
	if err != nil {
		return false // "null" (sandboxed frames, files) and garbage
	}
	if p.origins[n] {
		return true
	}
	u, err := url.Parse(n)
	if err != nil {
		return false
	}
	host := strings.ToLower(r.Host)
	if (u.Scheme == "http" && strings.HasSuffix(host, ":80")) || (u.Scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return host != "" && u.Host == host
}

// ipState is what the server tracks per client IP while it has connections or has tried
// recently.
type ipState struct {
	conns    int
	lim      *Limiter // messages, shared by the IP's connections
	upgrades *Limiter // WebSocket handshakes
	left     time.Time
}

// ipRetention is how long an IP's state outlives its last connection or attempt: its
// buckets are full again by then, so forgetting it gives nothing back.
func (s *Server) ipRetention() time.Duration { return max(s.opts.IPWindow, time.Minute) }

func (s *Server) ipStateLocked(ip string, now time.Time) *ipState {
	st := s.ips[ip]
	if st == nil {
		st = &ipState{
			lim:      NewLimiter(s.opts.IPMessages, s.opts.IPWindow),
			upgrades: NewLimiter(s.opts.UpgradesPerMinute, time.Minute),
		}
		s.ips[ip] = st
	}
	st.left = now
	return st
}

// allowUpgrade takes one handshake from ip's bucket; when it is empty it says how long
// until the next.
func (s *Server) allowUpgrade(ip string, now time.Time) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ipStateLocked(ip, now).upgrades.Allow(now)
}

func (s *Server) acquireIP(ip string) (*Limiter, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ipStateLocked(ip, time.Now())
	if st.conns >= s.opts.ConnsPerIP {
		return nil, false
	}
	st.conns++
	return st.lim, true
}

func (s *Server) releaseIP(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.ips[ip]; st != nil {
		if st.conns--; st.conns <= 0 {
			st.conns, st.left = 0, time.Now()
		}
	}
}

// janitor forgets idle per-IP state and stale viewer counts until Shutdown.
func (s *Server) janitor() {
	t := time.NewTicker(min(s.opts.IPWindow, 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *Server) sweep(now time.Time) {
	defer s.recovered("janitor", "")
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.ipRetention()
	for k, st := range s.ips {
		if st.conns == 0 && now.Sub(st.left) > keep {
			delete(s.ips, k)
		}
	}
	if len(s.ips) == 0 {
		s.ips = make(map[string]*ipState) // a map never shrinks; a new one does
	}
	for k, v := range s.seen {
		if now.Sub(v.at) > s.opts.RoomTTL {
			delete(s.seen, k)
		}
	}
	if len(s.seen) == 0 {
		s.seen = make(map[string]seenCount)
	}
}
