package chat

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onairhq/onair/internal/promtext"
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
	panics        atomic.Int64
	tooBig        atomic.Int64
	upgradeErrors atomic.Int64
	gapFilled     atomic.Int64
	modActions    atomic.Int64

	fanout fanoutHist

	mu        sync.Mutex
	rejectBy  map[string]int64
	refusedBy map[string]int64
}

// fanoutBounds are the histogram buckets (seconds) of a frame's fan-out time.
var fanoutBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// fanoutHist times how long a frame takes to reach every local socket (or its queue).
type fanoutHist struct {
	buckets [len(fanoutBounds) + 1]atomic.Int64
	sumNS   atomic.Int64
}

func (h *fanoutHist) observe(d time.Duration) {
	i := 0
	for i < len(fanoutBounds) && d.Seconds() > fanoutBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNS.Add(int64(d))
}

func (m *metrics) rejected(code string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rejectBy == nil {
		m.rejectBy = make(map[string]int64)
	}
	m.rejectBy[code]++
}

func (m *metrics) refusedConn(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refusedBy == nil {
		m.refusedBy = make(map[string]int64)
	}
	m.refusedBy[reason]++
}

// WriteMetrics writes the server's metrics in the Prometheus text exposition format.
func (s *Server) WriteMetrics(w io.Writer) error {
	m := &s.metrics
	p := promtext.NewWriter(w)
	p.Gauge("onair_chat_connections", "Open chat WebSocket connections on this node.", m.conns.Load())
	p.Gauge("onair_chat_rooms", "Chat rooms with viewers on this node.", m.rooms.Load())
	p.Counter("onair_chat_messages_total", "Chat messages accepted from this node's clients.", m.messages.Load())
	p.Counter("onair_chat_frames_total", "Frames encoded for broadcast (each once, for all viewers).", m.frames.Load())
	p.Counter("onair_chat_deliveries_total", "Broadcast frames queued to clients.", m.deliveries.Load())
	p.Counter("onair_chat_queued_frames_total", "Frames the socket did not take at once, left to the connection's writer.", m.queued.Load())
	p.Counter("onair_chat_slow_consumer_closes_total", "Connections closed because their outbound queue overflowed.", m.slowClosed.Load())
	p.Counter("onair_chat_oversized_frames_total", "Connections closed for a frame over the read limit.", m.tooBig.Load())
	p.Counter("onair_chat_upgrade_errors_total", "Failed WebSocket handshakes.", m.upgradeErrors.Load())
	p.Counter("onair_chat_gap_filled_total", "Events recovered from history after a bus gap.", m.gapFilled.Load())
	p.Counter("onair_chat_moderation_actions_total", "Moderator actions performed.", m.modActions.Load())
	p.Counter("onair_chat_panics_total", "Panics recovered in connection and room goroutines (each one logged).", m.panics.Load())
	p.Family("onair_chat_fanout_seconds", "histogram", "Time to hand one broadcast frame to every local viewer's socket.")
	var cum int64
	for i, b := range fanoutBounds {
		cum += m.fanout.buckets[i].Load()
		p.Sample("onair_chat_fanout_seconds_bucket", fmt.Sprintf(`le="%g"`, b), cum)
	}
	cum += m.fanout.buckets[len(fanoutBounds)].Load()
	p.Sample("onair_chat_fanout_seconds_bucket", `le="+Inf"`, cum)
	p.Sample("onair_chat_fanout_seconds_sum", "", time.Duration(m.fanout.sumNS.Load()).Seconds())
	p.Sample("onair_chat_fanout_seconds_count", "", cum)
	up := 1
	if s.bus.Ready() != nil {
		up = 0
	}
	p.Gauge("onair_chat_bus_up", "1 if the chat bus (Redis) is reachable.", up)
	m.mu.Lock()
	defer m.mu.Unlock()
	p.Family("onair_chat_refused_connections_total", "counter", "Connection attempts refused, by reason.")
	for _, reason := range refusalReasons {
		p.Sample("onair_chat_refused_connections_total", fmt.Sprintf("reason=%q", reason), m.refusedBy[reason])
	}
	p.Family("onair_chat_rejected_total", "counter", "Client requests answered with an error, by code.")
	for _, code := range []string{codeBadJSON, codeUnknownType, codeBadRequest, codeNameRequired, codeBadName,
		codeReservedName, codeEmpty, codeTooLong, codeFiltered, codeRateLimited, codeTimedOut, codeBanned,
		codeBadToken, codeForbidden, codeUnavailable} {
		p.Sample("onair_chat_rejected_total", fmt.Sprintf("code=%q", code), m.rejectBy[code])
	}
	return p.Err()
}
