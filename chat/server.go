package chat

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Server serves chat rooms over WebSocket at /chat/{channel}. It is an http.Handler.
type Server struct {
	opts     Options
	bus      Bus
	ownBus   bool
	filter   *WordFilter
	log      *slog.Logger
	upgrader websocket.Upgrader
	metrics  metrics

	ctx    context.Context // canceled by Shutdown; parent of every room
	cancel context.CancelFunc
	wg     sync.WaitGroup // rooms and connections

	mu        sync.Mutex
	rooms     map[string]*Room
	ips       map[string]*ipState
	lastSweep time.Time
	closing   bool
}

// ipState is what the server tracks per client IP while it has connections.
type ipState struct {
	conns int
	lim   *Limiter
	left  time.Time // when conns last dropped to 0
}

// NewServer returns a Server configured by opts (zero fields take their defaults).
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:   opts,
		bus:    opts.Bus,
		filter: NewWordFilter(opts.FilterWords),
		log:    opts.Logger,
		rooms:  make(map[string]*Room),
		ips:    make(map[string]*ipState),
	}
	if s.bus == nil {
		s.bus = NewMemoryBus()
		s.ownBus = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:   512, // client frames are small; bigger ones are read through
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{}, // idle connections hold no write buffer
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      s.checkOrigin,
	}
	return s
}

// validChannel reports whether name matches [a-z0-9_-]{1,64}.
func validChannel(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Server) checkOrigin(r *http.Request) bool {
	if len(s.opts.AllowedOrigins) == 0 {
		return true // chat carries no ambient credentials (no cookies), so any page may embed it
	}
	origin := r.Header.Get("Origin")
	for _, o := range s.opts.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func (s *Server) clientIP(r *http.Request) string {
	if s.opts.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if ip := strings.TrimSpace(parts[len(parts)-1]); ip != "" {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ipTag is a keyed hash of ip: the same on every node sharing the secret, so IP bans work
// across nodes without raw addresses being stored in Redis or sent around.
func (s *Server) ipTag(ip string) string {
	m := hmac.New(sha256.New, append([]byte("onair-chat-ip\n"), s.opts.Secret...))
	m.Write([]byte(ip))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// ServeHTTP upgrades /chat/{channel} to a chat connection and serves it until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	channel := r.PathValue("channel")
	if channel == "" {
		channel = strings.TrimPrefix(r.URL.Path, "/chat/")
	}
	if !validChannel(channel) {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.metrics.upgradeErrors.Add(1)
		return // the upgrader has answered with an HTTP error
	}
	if s.opts.SocketSendBuffer > 0 {
		if tc, ok := conn.NetConn().(*net.TCPConn); ok {
			tc.SetWriteBuffer(s.opts.SocketSendBuffer)
		}
	}
	// The connection is served by a goroutine of our own, not this handler's: returning lets
	// net/http free its per-request state (about 8 KB a connection).
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveConn(conn, channel, s.clientIP(r), r.URL.Query())
	}()
}

// serveConn admits an upgraded connection and serves it until it ends.
func (s *Server) serveConn(conn *websocket.Conn, channel, ip string, q url.Values) {
	ipLim, ok := s.acquireIP(ip)
	if !ok {
		s.metrics.refused.Add(1)
		closeNow(conn, websocket.ClosePolicyViolation, reasonTooMany)
		return
	}
	defer s.releaseIP(ip)

	c := newClient(s, conn, ip, s.ipTag(ip), ipLim)
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	err := s.bus.Restricted(ctx, channel, "", c.ipTag)
	cancel()
	var re *RestrictedError
	if errors.As(err, &re) && re.Ban {
		s.metrics.refused.Add(1)
		closeNow(conn, closeBanned, reasonBanned)
		return
	}
	c.serve(channel, q.Get("name"), q.Get("token"))
}

func closeNow(conn *websocket.Conn, code int, reason string) {
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	conn.Close()
}

func (s *Server) acquireIP(ip string) (*Limiter, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	// An IP's message budget outlives its connections for one window, so reconnecting does
	// not refill it. Idle entries are swept at most once per window.
	if now.Sub(s.lastSweep) > s.opts.IPWindow {
		s.lastSweep = now
		for k, st := range s.ips {
			if st.conns == 0 && now.Sub(st.left) > s.opts.IPWindow {
				delete(s.ips, k)
			}
		}
	}
	st := s.ips[ip]
	if st == nil {
		st = &ipState{lim: NewLimiter(s.opts.IPMessages, s.opts.IPWindow)}
		s.ips[ip] = st
	}
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

// enterRoom returns the running room for channel, starting it if needed, and counts c in it.
func (s *Server) enterRoom(channel string) (*Room, error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errors.New("chat: server shutting down")
	}
	r := s.rooms[channel]
	if r == nil {
		r = newRoom(s, channel)
		s.rooms[channel] = r
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.run()
		}()
	}
	r.members++
	s.mu.Unlock()
	select {
	case <-r.ready:
		return r, nil
	case <-s.ctx.Done():
		s.leaveRoom(r)
		return nil, s.ctx.Err()
	}
}

// leaveRoom undoes enterRoom; the last one out stops the room (and its bus subscription).
func (s *Server) leaveRoom(r *Room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.members--; r.members == 0 {
		if s.rooms[r.name] == r {
			delete(s.rooms, r.name)
		}
		r.cancel()
	}
}

// Announce posts a system message (kind SystemLive, SystemOffline, SystemTakenDown or
// SystemNotice) into channel's room on every node and into its history. An empty text
// gets a default wording; reason is shown for taken_down.
func (s *Server) Announce(channel, kind, text, reason string) error {
	if !validChannel(channel) {
		return fmt.Errorf("chat: announce: invalid channel %q", channel)
	}
	switch kind {
	case SystemLive, SystemOffline, SystemTakenDown, SystemNotice:
	default:
		return fmt.Errorf("chat: announce: unknown kind %q", kind)
	}
	if text == "" {
		switch kind {
		case SystemLive:
			text = channel + " is live"
		case SystemOffline:
			text = channel + " went offline"
		case SystemTakenDown:
			text = "The stream was taken down."
		}
	}
	now := time.Now()
	e := &Event{Kind: KindSystem, ID: newID("m_")}
	e.Body = mustJSON(systemJSON{Type: "system", ID: e.ID, Time: fmtTime(now), Kind: kind, Text: text, Reason: reason})
	ctx, cancel := context.WithTimeout(s.ctx, 3*time.Second)
	defer cancel()
	return wrapf(s.bus.Publish(ctx, channel, e, s.opts.HistoryLen), "chat: announce %s in %s", kind, channel)
}

// ViewerCount returns the number of connections in channel's room, summed over all nodes.
func (s *Server) ViewerCount(channel string) int {
	s.mu.Lock()
	r := s.rooms[channel]
	s.mu.Unlock()
	if r != nil {
		return r.viewers()
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	n, err := s.bus.Viewers(ctx, channel)
	if err != nil {
		return 0
	}
	return n
}

// Ready returns nil when the server accepts connections and its bus is reachable.
func (s *Server) Ready() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errors.New("chat: shutting down")
	}
	return wrapf(s.bus.Ready(), "chat: bus")
}

// Shutdown closes every connection with a close frame (1001 "shutdown"), stops all rooms and
// waits for their goroutines or ctx. It closes the bus only if NewServer created it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.closeAll(websocket.CloseGoingAway, reasonShutdown)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("chat: shutdown: %w", ctx.Err())
	}
	s.cancel()
	if s.ownBus {
		s.bus.Close()
	}
	return err
}

// isModToken reports whether token makes its holder a moderator of channel.
func (s *Server) isModToken(channel, token string) bool {
	if s.opts.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.AdminToken)) == 1 {
		return true
	}
	return VerifyModeratorToken(s.opts.Secret, channel, token, time.Now()) == nil
}
