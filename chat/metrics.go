package chat

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// metrics are the server's counters, exported by WriteMetrics.
type metrics struct {
	conns         atomic.Int64
	rooms         atomic.Int64
	messages      atomic.Int64
	frames        atomic.Int64
	deliveries    atomic.Int64
	slowClosed    atomic.Int64
	queued        atomic.Int64
	refused       atomic.Int64
	tooBig        atomic.Int64
	upgradeErrors atomic.Int64
	gapFilled     atomic.Int64
	modActions    atomic.Int64

	mu       sync.Mutex
	rejectBy map[string]int64
}

func (m *metrics) rejected(code string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rejectBy == nil {
		m.rejectBy = make(map[string]int64)
	}
	m.rejectBy[code]++
}

// WriteMetrics writes the server's metrics in the Prometheus text exposition format.
func (s *Server) WriteMetrics(w io.Writer) {
	m := &s.metrics
	g := func(name, help, typ string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
	}
	g("onair_chat_connections", "Open chat WebSocket connections on this node.", "gauge", m.conns.Load())
	g("onair_chat_rooms", "Chat rooms with viewers on this node.", "gauge", m.rooms.Load())
	g("onair_chat_messages_total", "Chat messages accepted from this node's clients.", "counter", m.messages.Load())
	g("onair_chat_frames_total", "Frames encoded for broadcast (each once, for all viewers).", "counter", m.frames.Load())
	g("onair_chat_deliveries_total", "Broadcast frames queued to clients.", "counter", m.deliveries.Load())
	g("onair_chat_queued_frames_total", "Frames the socket did not take at once, left to the connection's writer.", "counter", m.queued.Load())
	g("onair_chat_slow_consumer_closes_total", "Connections closed because their outbound queue overflowed.", "counter", m.slowClosed.Load())
	g("onair_chat_refused_connections_total", "Connections refused (per-IP limit, banned IP).", "counter", m.refused.Load())
	g("onair_chat_oversized_frames_total", "Connections closed for a frame over the read limit.", "counter", m.tooBig.Load())
	g("onair_chat_upgrade_errors_total", "Failed WebSocket handshakes.", "counter", m.upgradeErrors.Load())
	g("onair_chat_gap_filled_total", "Events recovered from history after a bus gap.", "counter", m.gapFilled.Load())
	g("onair_chat_moderation_actions_total", "Moderator actions performed.", "counter", m.modActions.Load())
	up := int64(1)
	if s.bus.Ready() != nil {
		up = 0
	}
	g("onair_chat_bus_up", "1 if the chat bus (Redis) is reachable.", "gauge", up)
	fmt.Fprintf(w, "# HELP onair_chat_rejected_total Client requests answered with an error, by code.\n# TYPE onair_chat_rejected_total counter\n")
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, code := range []string{codeBadJSON, codeUnknownType, codeBadRequest, codeNameRequired, codeBadName,
		codeReservedName, codeEmpty, codeTooLong, codeFiltered, codeRateLimited, codeTimedOut, codeBanned,
		codeBadToken, codeForbidden, codeUnavailable} {
		fmt.Fprintf(w, "onair_chat_rejected_total{code=%q} %d\n", code, m.rejectBy[code])
	}
}
