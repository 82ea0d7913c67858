package segmenter

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/onairhq/onair/internal/promtext"
)

// metrics are the segmenter's counters, exported in Prometheus text format.
type metrics struct {
	broadcasts       atomic.Uint64
	failures         atomic.Uint64
	videoUnits       atomic.Uint64
	audioUnits       atomic.Uint64
	dtsMismatch      atomic.Uint64
	encodeWarnings   atomic.Uint64
	targetExceeded   atomic.Uint64
	partTargetRaised atomic.Uint64
	holdTimeouts     atomic.Uint64
	bytesOut         atomic.Uint64

	mu       sync.Mutex
	requests map[reqKey]uint64
}

type reqKey struct {
	kind kind
	code int
}

func (m *metrics) request(k kind, code int) {
	m.mu.Lock()
	if m.requests == nil {
		m.requests = make(map[reqKey]uint64)
	}
	m.requests[reqKey{k, code}]++
	m.mu.Unlock()
}

// WriteMetrics writes the segmenter's metrics in Prometheus text format.
func (s *Segmenter) WriteMetrics(w io.Writer) error {
	live, ended := 0, 0
	s.mu.Lock()
	for _, cs := range s.channels {
		if st := cs.cur; st != nil {
			st.mu.Lock()
			if st.ended {
				ended++
			} else {
				live++
			}
			st.mu.Unlock()
		}
	}
	s.mu.Unlock()

	m := &s.metrics
	p := promtext.NewWriter(w)
	p.Gauge("onair_hls_streams_live", "Broadcasts being muxed into HLS.", live)
	p.Gauge("onair_hls_streams_ended", "Ended broadcasts whose final playlist is still served.", ended)
	p.Counter("onair_hls_broadcasts_total", "Broadcasts the segmenter started muxing.", m.broadcasts.Load())
	p.Counter("onair_hls_mux_failures_total", "Broadcasts the muxer could not handle.", m.failures.Load())
	p.Family("onair_hls_access_units_total", "counter", "Access units written to muxers.")
	p.Sample("onair_hls_access_units_total", `kind="video"`, m.videoUnits.Load())
	p.Sample("onair_hls_access_units_total", `kind="audio"`, m.audioUnits.Load())
	p.Counter("onair_hls_dts_mismatch_total", "Video frames whose bitstream-derived DTS disagreed with RTMP's.", m.dtsMismatch.Load())
	p.Counter("onair_hls_muxer_warnings_total", "Non-fatal muxer warnings.", m.encodeWarnings.Load())
	p.Counter("onair_hls_target_duration_exceeded_total", "Streams with a segment longer than the pinned target duration.", m.targetExceeded.Load())
	p.Counter("onair_hls_part_target_raised_total", "Times a stream's PART-TARGET had to grow.", m.partTargetRaised.Load())
	p.Counter("onair_hls_hold_timeouts_total", "Blocking requests answered 503 after waiting too long.", m.holdTimeouts.Load())
	p.Counter("onair_hls_response_bytes_total", "Body bytes sent by the HLS origin.", m.bytesOut.Load())

	m.mu.Lock()
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		return keys[i].code < keys[j].code
	})
	p.Family("onair_hls_requests_total", "counter", "HLS origin requests by object kind and status.")
	for _, k := range keys {
		p.Sample("onair_hls_requests_total", fmt.Sprintf(`kind=%q,code="%d"`, k.kind.String(), k.code), m.requests[k])
	}
	m.mu.Unlock()
	return p.Err()
}
