package chat

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's counters, exported by Collect.
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

// The chat server's metric descriptions.
var (
	descConns       = prometheus.NewDesc("onair_chat_connections", "Open chat WebSocket connections on this node.", nil, nil)
	descRooms       = prometheus.NewDesc("onair_chat_rooms", "Chat rooms with viewers on this node.", nil, nil)
	descMessages    = prometheus.NewDesc("onair_chat_messages_total", "Chat messages accepted from this node's clients.", nil, nil)
	descFrames      = prometheus.NewDesc("onair_chat_frames_total", "Frames encoded for broadcast (each once, for all viewers).", nil, nil)
	descDeliveries  = prometheus.NewDesc("onair_chat_deliveries_total", "Broadcast frames queued to clients.", nil, nil)
	descQueued      = prometheus.NewDesc("onair_chat_queued_frames_total", "Frames the socket did not take at once, left to the connection's writer.", nil, nil)
	descSlowClosed  = prometheus.NewDesc("onair_chat_slow_consumer_closes_total", "Connections closed because their outbound queue overflowed.", nil, nil)
	descTooBig      = prometheus.NewDesc("onair_chat_oversized_frames_total", "Connections closed for a frame over the read limit.", nil, nil)
	descUpgradeErrs = prometheus.NewDesc("onair_chat_upgrade_errors_total", "Failed WebSocket handshakes.", nil, nil)
	descGapFilled   = prometheus.NewDesc("onair_chat_gap_filled_total", "Events recovered from history after a bus gap.", nil, nil)
	descModActions  = prometheus.NewDesc("onair_chat_moderation_actions_total", "Moderator actions performed.", nil, nil)
	descPanics      = prometheus.NewDesc("onair_chat_panics_total", "Panics recovered in connection and room goroutines (each one logged).", nil, nil)
	descFanout      = prometheus.NewDesc("onair_chat_fanout_seconds", "Time to hand one broadcast frame to every local viewer's socket.", nil, nil)
	descBusUp       = prometheus.NewDesc("onair_chat_bus_up", "1 if the chat bus (Redis) is reachable.", nil, nil)
	descRefused     = prometheus.NewDesc("onair_chat_refused_connections_total", "Connection attempts refused, by reason.", []string{"reason"}, nil)
	descRejected    = prometheus.NewDesc("onair_chat_rejected_total", "Client requests answered with an error, by code.", []string{"code"}, nil)

	chatDescs = []*prometheus.Desc{descConns, descRooms, descMessages, descFrames, descDeliveries, descQueued,
		descSlowClosed, descTooBig, descUpgradeErrs, descGapFilled, descModActions, descPanics, descFanout,
		descBusUp, descRefused, descRejected}

	// rejectCodes are the error codes onair_chat_rejected_total counts, each
	// sent even at zero.
	rejectCodes = [...]string{codeBadJSON, codeUnknownType, codeBadRequest, codeNameRequired, codeBadName,
		codeReservedName, codeEmpty, codeTooLong, codeFiltered, codeRateLimited, codeTimedOut, codeBanned,
		codeBadToken, codeForbidden, codeUnavailable}
)

// Describe sends the descriptions of the chat server's metrics (prometheus.Collector).
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range chatDescs {
		ch <- d
	}
}

// Collect sends the chat server's current figures (prometheus.Collector).
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	m := &s.metrics
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConns, m.conns.Load())
	gauge(descRooms, m.rooms.Load())
	counter(descMessages, m.messages.Load())
	counter(descFrames, m.frames.Load())
	counter(descDeliveries, m.deliveries.Load())
	counter(descQueued, m.queued.Load())
	counter(descSlowClosed, m.slowClosed.Load())
	counter(descTooBig, m.tooBig.Load())
	counter(descUpgradeErrs, m.upgradeErrors.Load())
	counter(descGapFilled, m.gapFilled.Load())
	counter(descModActions, m.modActions.Load())
	counter(descPanics, m.panics.Load())

	buckets := make(map[float64]uint64, len(fanoutBounds))
	var cum int64
	for i, b := range fanoutBounds {
		cum += m.fanout.buckets[i].Load()
		buckets[b] = uint64(cum)
	}
	cum += m.fanout.buckets[len(fanoutBounds)].Load()
	ch <- prometheus.MustNewConstHistogram(descFanout, uint64(cum), time.Duration(m.fanout.sumNS.Load()).Seconds(), buckets)

	var up int64 = 1
	if s.bus.Ready() != nil {
		up = 0
	}
	gauge(descBusUp, up)

	m.mu.Lock()
	defer m.mu.Unlock()
	for _, reason := range refusalReasons {
		counter(descRefused, m.refusedBy[reason], reason)
	}
	for _, code := range rejectCodes {
		counter(descRejected, m.rejectBy[code], code)
	}
}
