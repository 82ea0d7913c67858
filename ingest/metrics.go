package ingest

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the hub's counters for /metrics (Collect).
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

// The hub's metric descriptions; Collect emits them in this order.
var (
	descPublishers  = prometheus.NewDesc("onair_ingest_active_publishers", "RTMP publishers currently publishing.", nil, nil)
	descConns       = prometheus.NewDesc("onair_ingest_rtmp_connections", "RTMP connections open.", nil, nil)
	descPrePublish  = prometheus.NewDesc("onair_ingest_prepublish_connections", "RTMP connections open that have not published yet.", nil, nil)
	descLive        = prometheus.NewDesc("onair_ingest_live_broadcasts", "Broadcasts currently open (including those in their grace period).", nil, nil)
	descStarted     = prometheus.NewDesc("onair_ingest_broadcasts_started_total", "Broadcasts started.", nil, nil)
	descEnded       = prometheus.NewDesc("onair_ingest_broadcasts_ended_total", "Broadcasts ended, by reason.", []string{"reason"}, nil)
	descReceived    = prometheus.NewDesc("onair_ingest_received_bytes_total", "Media bytes received from publishers.", nil, nil)
	descRefused     = prometheus.NewDesc("onair_ingest_refused_publishes_total", "Refused connections and publishes, by reason.", []string{"reason"}, nil)
	descViolations  = prometheus.NewDesc("onair_ingest_protocol_violations_total", "RTMP connections closed for breaking the chunk stream's rules or limits, by reason.", []string{"reason"}, nil)
	descDropped     = prometheus.NewDesc("onair_ingest_dropped_units_total", "Access units dropped because a consumer fell behind.", nil, nil)
	descMalformed   = prometheus.NewDesc("onair_ingest_malformed_tags_total", "Malformed audio/video tags dropped.", nil, nil)
	descTLSConns    = prometheus.NewDesc("onair_ingest_rtmps_connections", "RTMP connections open that came over TLS (RTMPS), counted in onair_ingest_rtmp_connections too.", nil, nil)
	descTLSFails    = prometheus.NewDesc("onair_ingest_tls_handshake_failures_total", "RTMPS connections closed because their TLS handshake failed, by reason (plain_rtmp, not_tls, timeout, client_alert, closed, error).", []string{"reason"}, nil)
	descPublishWait = prometheus.NewDesc("onair_ingest_publish_accept_seconds", "Time from an RTMP connection's accept to its accepted publish (handshake, connect, createStream, publish, key check).", nil, nil)

	hubDescs = []*prometheus.Desc{descPublishers, descConns, descPrePublish, descLive, descStarted, descEnded,
		descReceived, descRefused, descViolations, descTLSConns, descTLSFails, descDropped, descMalformed, descPublishWait}
)

// Describe sends the descriptions of the hub's metrics (prometheus.Collector).
func (h *Hub) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range hubDescs {
		ch <- d
	}
}

// Collect sends the hub's current figures (prometheus.Collector). It reads the
// counters the hub keeps as it works; the media path pays nothing for it.
func (h *Hub) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	conns := len(h.conns)
	live := 0
	dropped := h.stats.dropped.Load()
	for _, c := range h.channels {
		if lb := c.live; lb != nil {
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

	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descPublishers, float64(h.stats.publishers.Load()))
	gauge(descConns, float64(conns))
	gauge(descPrePublish, float64(h.stats.prePublish.Load()))
	gauge(descLive, float64(live))
	counter(descStarted, h.stats.broadcasts.Load())
	countersByLabel(ch, descEnded, ended)
	counter(descReceived, h.stats.bytes.Load())
	countersByLabel(ch, descRefused, refused)
	countersByLabel(ch, descViolations, violations)
	gauge(descTLSConns, float64(h.stats.tlsConns.Load()))
	countersByLabel(ch, descTLSFails, tlsFails)
	counter(descDropped, dropped)
	counter(descMalformed, h.stats.badTags.Load())
	ch <- h.stats.publishIn.metric(descPublishWait)
}

// countersByLabel sends one counter per key of values, labelled with the key.
func countersByLabel(ch chan<- prometheus.Metric, d *prometheus.Desc, values map[string]uint64) {
	for k, v := range values {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), k)
	}
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

// metric returns the histogram's figures as a constant Prometheus histogram.
func (h *histogram) metric(d *prometheus.Desc) prometheus.Metric {
	buckets := make(map[float64]uint64, len(histogramBounds))
	var cum uint64
	for i, le := range histogramBounds {
		cum += h.counts[i].Load()
		buckets[le] = cum
	}
	cum += h.counts[len(histogramBounds)].Load()
	return prometheus.MustNewConstHistogram(d, cum, time.Duration(h.sumNs.Load()).Seconds(), buckets)
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
