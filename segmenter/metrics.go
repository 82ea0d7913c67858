package segmenter

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/onairhq/onair/internal/promtext"
)

// metrics are the segmenter's counters, exported in Prometheus text format.
type metrics struct {
	broadcasts      atomic.Uint64
	failures        atomic.Uint64
	videoUnits      atomic.Uint64
	audioUnits      atomic.Uint64
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

// WriteMetrics writes the segmenter's metrics in Prometheus text format.
func (s *Segmenter) WriteMetrics(w io.Writer) error {
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
	p := promtext.NewWriter(w)
	p.Gauge("onair_hls_streams_live", "Broadcasts being packaged into HLS.", live)
	p.Gauge("onair_hls_streams_ended", "Ended broadcasts whose final playlist is still served.", ended)
	p.Counter("onair_hls_broadcasts_total", "Broadcasts the segmenter started packaging.", m.broadcasts.Load())
	p.Counter("onair_hls_mux_failures_total", "Broadcasts the packager could not handle.", m.failures.Load())
	p.Family("onair_hls_access_units_total", "counter", "Access units packaged.")
	p.Sample("onair_hls_access_units_total", `kind="video"`, m.videoUnits.Load())
	p.Sample("onair_hls_access_units_total", `kind="audio"`, m.audioUnits.Load())
	p.Counter("onair_hls_parts_total", "Parts (fragments) published.", m.parts.Load())
	p.Counter("onair_hls_part_bytes_total", "Bytes of media in published parts.", m.partBytes.Load())
	p.Counter("onair_hls_encode_errors_total", "Parts dropped because they could not be encoded.", m.encodeErrors.Load())
	p.Counter("onair_hls_forced_cuts_total", "Segments cut between keyframes because the keyframe interval was longer than the target duration.", m.forcedCuts.Load())
	p.Counter("onair_hls_discontinuities_total", "Discontinuities inserted for timestamp jumps.", m.discontinuities.Load())
	p.Counter("onair_hls_hold_timeouts_total", "Blocking requests answered 503 after waiting too long.", m.holdTimeouts.Load())
	p.Counter("onair_hls_response_bytes_total", "Body bytes sent by the HLS origin.", m.bytesOut.Load())

	p.Family("onair_hls_part_publish_seconds", "histogram", "Time from receiving the frame that closes a part to the part being listed.")
	var cum uint64
	for i, b := range partDelayBuckets {
		cum += m.partDelay.counts[i].Load()
		p.Sample("onair_hls_part_publish_seconds_bucket", fmt.Sprintf(`le="%g"`, b), cum)
	}
	cum += m.partDelay.counts[len(partDelayBuckets)].Load()
	p.Sample("onair_hls_part_publish_seconds_bucket", `le="+Inf"`, cum)
	p.Sample("onair_hls_part_publish_seconds_sum", "", float64(m.partDelay.sumNS.Load())/1e9)
	p.Sample("onair_hls_part_publish_seconds_count", "", cum)

	p.Family("onair_hls_requests_total", "counter", "HLS origin requests by object kind and status.")
	for k := range m.requests {
		for i, code := range statusCodes {
			if v := m.requests[k][i].Load(); v > 0 {
				p.Sample("onair_hls_requests_total", fmt.Sprintf(`kind=%q,code="%d"`, kind(k).String(), code), v)
			}
		}
	}
	return p.Err()
}
