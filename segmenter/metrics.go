package segmenter

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the segmenter's counters, exported through Collect.
type metrics struct {
	broadcasts      atomic.Uint64
	failures        atomic.Uint64
	videoUnits      atomic.Uint64
	audioUnits      atomic.Uint64
	segments        atomic.Uint64 // closed: cut at the next one, or the broadcast's last
	parts           atomic.Uint64
	partBytes       atomic.Uint64
	encodeErrors    atomic.Uint64
	forcedCuts      atomic.Uint64
	discontinuities atomic.Uint64
	holdTimeouts    atomic.Uint64
	bytesOut        atomic.Uint64
	partDelay       histogram

	requests [kindPart + 1][len(statusCodes)]atomic.Uint64
}

// statusCodes are the statuses the origin answers with, in metric order.
var statusCodes = [...]int{200, 204, 206, 304, 400, 404, 405, 416, 499, 503}

// statusLabels are statusCodes as the metric's code label values.
var statusLabels = [...]string{"200", "204", "206", "304", "400", "404", "405", "416", "499", "503"}

func (m *metrics) request(k kind, code int) {
	for i, c := range statusCodes {
		if c == code {
			m.requests[k][i].Add(1)
			return
		}
	}
}

// histogram counts durations into fixed buckets (seconds).
type histogram struct {
	counts [len(partDelayBuckets) + 1]atomic.Uint64
	sumNS  atomic.Uint64
}

// partDelayBuckets bound the time from the frame that closes a part to the
// part being listed.
var partDelayBuckets = [...]float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(partDelayBuckets) && d.Seconds() > partDelayBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNS.Add(uint64(max(d, 0)))
}

// The segmenter's metric descriptions.
var (
	descStreamsLive     = prometheus.NewDesc("onair_hls_streams_live", "Broadcasts being packaged into HLS.", nil, nil)
	descStreamsEnded    = prometheus.NewDesc("onair_hls_streams_ended", "Ended broadcasts whose final playlist is still served.", nil, nil)
	descBroadcasts      = prometheus.NewDesc("onair_hls_broadcasts_total", "Broadcasts the segmenter started packaging.", nil, nil)
	descMuxFailures     = prometheus.NewDesc("onair_hls_mux_failures_total", "Broadcasts the packager could not handle.", nil, nil)
	descAccessUnits     = prometheus.NewDesc("onair_hls_access_units_total", "Access units packaged.", []string{"kind"}, nil)
	descSegments        = prometheus.NewDesc("onair_hls_segments_total", "Segments completed (cut before the next one, or the broadcast's last).", nil, nil)
	descParts           = prometheus.NewDesc("onair_hls_parts_total", "Parts (fragments) published.", nil, nil)
	descPartBytes       = prometheus.NewDesc("onair_hls_part_bytes_total", "Bytes of media in published parts.", nil, nil)
	descEncodeErrors    = prometheus.NewDesc("onair_hls_encode_errors_total", "Parts dropped because they could not be encoded.", nil, nil)
	descForcedCuts      = prometheus.NewDesc("onair_hls_forced_cuts_total", "Segments cut between keyframes because the keyframe interval was longer than the target duration.", nil, nil)
	descDiscontinuities = prometheus.NewDesc("onair_hls_discontinuities_total", "Discontinuities inserted for timestamp jumps.", nil, nil)
	descHoldTimeouts    = prometheus.NewDesc("onair_hls_hold_timeouts_total", "Blocking requests answered 503 after waiting too long.", nil, nil)
	descResponseBytes   = prometheus.NewDesc("onair_hls_response_bytes_total", "Body bytes sent by the HLS origin.", nil, nil)
	descPartPublish     = prometheus.NewDesc("onair_hls_part_publish_seconds", "Time from receiving the frame that closes a part to the part being listed.", nil, nil)
	descRequests        = prometheus.NewDesc("onair_hls_requests_total", "HLS origin requests by object kind and status.", []string{"kind", "code"}, nil)

	segmenterDescs = []*prometheus.Desc{descStreamsLive, descStreamsEnded, descBroadcasts, descMuxFailures, descAccessUnits,
		descSegments, descParts, descPartBytes, descEncodeErrors, descForcedCuts, descDiscontinuities, descHoldTimeouts, descResponseBytes,
		descPartPublish, descRequests}
)

// Describe sends the descriptions of the segmenter's metrics (prometheus.Collector).
func (s *Segmenter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range segmenterDescs {
		ch <- d
	}
}

// Collect sends the segmenter's current figures (prometheus.Collector), read
// from the counters it keeps as it packages and answers.
func (s *Segmenter) Collect(ch chan<- prometheus.Metric) {
	live, ended := 0, 0
	s.mu.Lock()
	for _, cs := range s.channels {
		switch {
		case cs.writing != nil:
			live++
		case cs.win != nil:
			ended++
		}
	}
	s.mu.Unlock()

	m := &s.metrics
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descStreamsLive, live)
	gauge(descStreamsEnded, ended)
	counter(descBroadcasts, m.broadcasts.Load())
	counter(descMuxFailures, m.failures.Load())
	counter(descAccessUnits, m.videoUnits.Load(), "video")
	counter(descAccessUnits, m.audioUnits.Load(), "audio")
	counter(descSegments, m.segments.Load())
	counter(descParts, m.parts.Load())
	counter(descPartBytes, m.partBytes.Load())
	counter(descEncodeErrors, m.encodeErrors.Load())
	counter(descForcedCuts, m.forcedCuts.Load())
	counter(descDiscontinuities, m.discontinuities.Load())
	counter(descHoldTimeouts, m.holdTimeouts.Load())
	counter(descResponseBytes, m.bytesOut.Load())

	buckets := make(map[float64]uint64, len(partDelayBuckets))
	var cum uint64
	for i, b := range partDelayBuckets {
		cum += m.partDelay.counts[i].Load()
		buckets[b] = cum
	}
	cum += m.partDelay.counts[len(partDelayBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(descPartPublish, cum, float64(m.partDelay.sumNS.Load())/1e9, buckets)

	for k := range m.requests {
		for i, code := range statusLabels {
			if v := m.requests[k][i].Load(); v > 0 {
				counter(descRequests, v, kind(k).String(), code)
			}
		}
	}
}
