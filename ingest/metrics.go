package ingest

import (
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onairhq/onair/internal/promtext"
)

// stats are the hub's counters for /metrics.
type stats struct {
	publishers atomic.Int64  // sessions currently publishing
	bytes      atomic.Uint64 // media bytes received
	broadcasts atomic.Uint64 // broadcasts started
	dropped    atomic.Uint64 // units dropped by feeds of ended broadcasts
	badTags    atomic.Uint64 // malformed tags dropped
	prePublish atomic.Int64  // connections accepted that have not published yet
	tlsConns   atomic.Int64  // RTMPS connections open (counted in hub.conns)
	publishIn  histogram     // time from accept to an accepted publish

	mu         sync.Mutex
	refused    map[string]uint64
	violations map[string]uint64
	endedBy    map[EndReason]uint64
	tlsFails   map[string]uint64
}

func (s *stats) refuse(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused[reason]++
}

func (s *stats) violation(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations[reason]++
}

func (s *stats) tlsFailed(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsFails == nil {
		s.tlsFails = make(map[string]uint64)
	}
	s.tlsFails[reason]++
}

func (s *stats) ended(r EndReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endedBy == nil {
		s.endedBy = make(map[EndReason]uint64)
	}
	s.endedBy[r]++
}

// WriteMetrics writes the hub's counters in the Prometheus text exposition format.
func (h *Hub) WriteMetrics(w io.Writer) error {
	h.mu.Lock()
	conns := len(h.conns)
	live := 0
	dropped := h.stats.dropped.Load()
	for _, ch := range h.channels {
		if lb := ch.live; lb != nil {
			live++
			for _, f := range lb.feeds {
				dropped += f.Dropped()
			}
		}
	}
	h.mu.Unlock()

	h.stats.mu.Lock()
	refused := maps.Clone(h.stats.refused)
	violations := maps.Clone(h.stats.violations)
	tlsFails := maps.Clone(h.stats.tlsFails)
	ended := make(map[string]uint64, len(h.stats.endedBy))
	for k, v := range h.stats.endedBy {
		ended[string(k)] = v
	}
	h.stats.mu.Unlock()

	p := promtext.NewWriter(w)
	p.Gauge("onair_ingest_active_publishers", "RTMP publishers currently publishing.", h.stats.publishers.Load())
	p.Gauge("onair_ingest_rtmp_connections", "RTMP connections open.", conns)
	p.Gauge("onair_ingest_rtmps_connections", "RTMP connections open that came over TLS (RTMPS), counted in onair_ingest_rtmp_connections too.", h.stats.tlsConns.Load())
	p.Gauge("onair_ingest_prepublish_connections", "RTMP connections open that have not published yet.", h.stats.prePublish.Load())
	p.Gauge("onair_ingest_live_broadcasts", "Broadcasts currently open (including those in their grace period).", live)
	p.Counter("onair_ingest_broadcasts_started_total", "Broadcasts started.", h.stats.broadcasts.Load())
	promtext.ByLabel(p, "onair_ingest_broadcasts_ended_total", "counter", "Broadcasts ended, by reason.", "reason", ended)
	p.Counter("onair_ingest_received_bytes_total", "Media bytes received from publishers.", h.stats.bytes.Load())
	promtext.ByLabel(p, "onair_ingest_refused_publishes_total", "counter", "Refused connections and publishes, by reason.", "reason", refused)
	promtext.ByLabel(p, "onair_ingest_protocol_violations_total", "counter", "RTMP connections closed for breaking the chunk stream's rules or limits, by reason.", "reason", violations)
	promtext.ByLabel(p, "onair_ingest_tls_handshake_failures_total", "counter", "RTMPS connections closed because their TLS handshake failed, by reason (plain_rtmp, not_tls, timeout, client_alert, closed, error).", "reason", tlsFails)
	p.Counter("onair_ingest_dropped_units_total", "Access units dropped because a consumer fell behind.", dropped)
	p.Counter("onair_ingest_malformed_tags_total", "Malformed audio/video tags dropped.", h.stats.badTags.Load())
	h.stats.publishIn.write(p, "onair_ingest_publish_accept_seconds", "Time from an RTMP connection's accept to its accepted publish (handshake, connect, createStream, publish, key check).")
	return p.Err()
}

// histogram counts observations in fixed buckets, for Prometheus.
type histogram struct {
	counts [len(histogramBounds) + 1]atomic.Uint64 // the last is +Inf
	sumNs  atomic.Int64
}

// histogramBounds are the buckets' upper bounds, in seconds.
var histogramBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(histogramBounds) && d.Seconds() > histogramBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *histogram) write(p *promtext.Writer, name, help string) {
	p.Family(name, "histogram", help)
	var cum uint64
	for i, le := range histogramBounds {
		cum += h.counts[i].Load()
		p.Sample(name+"_bucket", fmt.Sprintf(`le="%g"`, le), cum)
	}
	cum += h.counts[len(histogramBounds)].Load()
	p.Sample(name+"_bucket", `le="+Inf"`, cum)
	p.Sample(name+"_sum", "", time.Duration(h.sumNs.Load()).Seconds())
	p.Sample(name+"_count", "", cum)
}

// rateMeter measures a byte rate over the last few whole seconds with a small
// ring of per-second buckets: one lock and an add per message.
type rateMeter struct {
	mu      sync.Mutex
	buckets [rateWindow + 1]struct {
		sec   int64
		bytes int64
	}
}

const rateWindow = 4 // seconds averaged

func (m *rateMeter) add(now time.Time, n int) {
	sec := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.buckets[sec%int64(len(m.buckets))]
	if b.sec != sec {
		b.sec, b.bytes = sec, 0
	}
	b.bytes += int64(n)
}

// rate returns bits per second over the last rateWindow complete seconds.
func (m *rateMeter) rate(now time.Time) int64 {
	sec := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	var total int64
	for _, b := range m.buckets {
		if b.sec < sec && b.sec >= sec-rateWindow {
			total += b.bytes
		}
	}
	return total * 8 / rateWindow
}
