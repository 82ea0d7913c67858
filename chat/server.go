package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onairhq/onair/internal/clientip"
)

// Server serves chat rooms over WebSocket at /chat/{channel}. It is an http.Handler.
type Server struct {
	opts     Options
	bus      Bus
	ownBus   bool
	revoked  Revocations
	filter   *WordFilter
	log      *slog.Logger
	refusals *logSampler
	upgrader websocket.Upgrader
	resolver clientip.Resolver
	origins  originPolicy
	metrics  metrics

	ctx    context.Context // canceled by Shutdown; parent of every room
	cancel context.CancelFunc
	wg     sync.WaitGroup // rooms, connections and the janitor
	stop   chan struct{}  // closed by Shutdown: stops the janitor

	mu      sync.Mutex
	rooms   map[string]*Room
	ips     map[string]*ipState
	seen    map[string]seenCount // viewer counts rooms last saw, for when the bus cannot say
	closing bool
}

// NewServer returns a Server configured by opts, or the fields Validate refuses.
func NewServer(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		bus:      opts.Bus,
		revoked:  opts.Revocations,
		filter:   NewWordFilter(opts.FilterWords),
		log:      opts.Logger,
		refusals: newLogSampler(opts.Logger, 10*time.Second),
		resolver: clientip.NewResolver(opts.TrustedProxies),
		origins:  newOriginPolicy(opts.AllowedOrigins),
		stop:     make(chan struct{}),
		rooms:    make(map[string]*Room),
		ips:      make(map[string]*ipState),
		seen:     make(map[string]seenCount),
	}
	if s.bus == nil {
		s.bus = NewMemoryBus(MemoryOptions{RoomTTL: opts.RoomTTL})
		s.ownBus = true
	}
	if s.revoked == nil {
		if r, ok := s.bus.(Revocations); ok {
			s.revoked = r // shared by every node on the bus
		} else {
			s.revoked, _ = NewFileRevocations("") // memory only: cannot fail
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:   512, // client frames are small; bigger ones are read through
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{}, // idle connections hold no write buffer
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked before, with a logged reason
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.janitor()
	}()
	return s, nil
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

// ServeHTTP upgrades /chat/{channel} to a chat connection and serves it until it ends.
// Everything that can refuse a request is checked before the upgrade, cheapest first, so a
// refused client costs no WebSocket, room or bus state.
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
	ip := s.clientIP(r)
	if ok, wait := s.allowUpgrade(ip, time.Now()); !ok {
		s.refuse(refusedUpgradeRate, ip, channel)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		http.Error(w, "too many connection attempts from your address; retry later", http.StatusTooManyRequests)
		return
	}
	if s.opts.Known != nil && !s.opts.Known(channel) {
		s.refuse(refusedUnknownChannel, ip, channel)
		http.Error(w, "no such channel", http.StatusNotFound)
		return
	}
	if !s.origins.allows(r) {
		s.refuse(refusedOrigin, ip, channel, "origin", truncate(r.Header.Get("Origin"), 100))
		http.Error(w, "chat is not open to pages of this origin", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	if q.Has("token") {
		// A secret in a URL ends up in access logs and browser history.
		s.refuse(refusedTokenInURL, ip, channel)
		http.Error(w, "moderator tokens are not accepted in the URL; send them in a join message", http.StatusBadRequest)
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
	// Add to the wait group under the lock that Shutdown takes before it waits: an Add
	// racing a Wait is how a connection would outlive its server.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		closeNow(conn, websocket.CloseGoingAway, reasonShutdown)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.recovered("connection", channel)
		s.serveConn(conn, channel, ip, q.Get("name"))
	}()
}

// serveConn admits an upgraded connection and serves it until it ends.
func (s *Server) serveConn(conn *websocket.Conn, channel, ip, name string) {
	// A banned address is told so before its connections are counted: the
	// connection just closed by the ban may not have been released yet, and
	// "too many connections" would hide the ban. (Upgrades per address are
	// rate-limited before this, which bounds these lookups.)
	ipTag := s.ipTag(ip)
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	err := s.bus.Restricted(ctx, channel, "", ipTag)
	cancel()
	var re *RestrictedError
	if errors.As(err, &re) && re.Ban {
		s.refuse(refusedBanned, ip, channel)
		closeNow(conn, closeBanned, reasonBanned)
		return
	}
	ipLim, ok := s.acquireIP(ip)
	if !ok {
		s.refuse(refusedTooMany, ip, channel)
		closeNow(conn, websocket.ClosePolicyViolation, reasonTooMany)
		return
	}
	defer s.releaseIP(ip)
	newClient(s, conn, ip, ipTag, ipLim).serve(channel, name)
}

func closeNow(conn *websocket.Conn, code int, reason string) {
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	conn.Close()
}

// recovered ends a panic in one of the server's goroutines: it is logged and counted, and
// the goroutine's deferred clean-up has run, so its room and the others keep working.
// Use as "defer s.recovered(where, room)".
func (s *Server) recovered(where, room string) {
	if v := recover(); v != nil {
		s.panicked(where, room, v)
	}
}

// panicked logs and counts a recovered panic.
func (s *Server) panicked(where, room string, v any) {
	s.metrics.panics.Add(1)
	s.log.Error("chat: recovered from a panic", "in", where, "room", room, "panic", v, "stack", string(debug.Stack()))
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

// Shutdown closes every connection with a close frame (1001 "shutdown"), stops all rooms and
// waits for their goroutines or ctx. It closes the bus only if NewServer created it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.stop)
	}
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
