package chat

import (
	"context"
	"errors"
	"time"
)

// Chat's states as a role of a node (Health.State).
const (
	HealthOK       = "ok"       // serving, and reaching the other nodes through the bus
	HealthDegraded = "degraded" // serving local viewers, but the bus is unreachable: rooms are split per node
	HealthDown     = "down"     // not accepting connections (shutting down, bus closed)
)

// Health is chat's state and, unless it is ok, why.
type Health struct {
	State  string
	Reason string
}

// Health reports whether chat is serving and how well. A node whose Redis is unreachable is
// degraded, not down: its viewers still chat with each other, so a load balancer should
// keep sending them.
func (s *Server) Health() Health {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return Health{State: HealthDown, Reason: "shutting down"}
	}
	switch err := s.bus.Ready(); {
	case err == nil:
		return Health{State: HealthOK}
	case errors.Is(err, ErrBusClosed):
		return Health{State: HealthDown, Reason: "chat bus closed"}
	default:
		return Health{State: HealthDegraded, Reason: "chat bus: " + err.Error()} // local rooms still work
	}
}

// Ready returns nil while the server accepts connections, degraded or not (see Health).
func (s *Server) Ready() error {
	if h := s.Health(); h.State == HealthDown {
		return errors.New("chat: " + h.Reason)
	}
	return nil
}

// seenCount is a room's viewer count over all nodes as last seen.
type seenCount struct {
	n  int
	at time.Time
}

// noteViewers remembers channel's count for when the bus cannot be asked.
func (s *Server) noteViewers(channel string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[channel] = seenCount{n: n, at: time.Now()}
}

// ViewerCount returns the number of connections in channel's room, summed over all nodes.
// While the bus is unreachable it answers at once from what this node's rooms last saw.
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
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.seen[channel].n
	}
	s.noteViewers(channel, n)
	return n
}
