package segmenter

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSegmenterCollector checks the segmenter's figures as Prometheus gathers
// them, and that its names pass promlint.
func TestSegmenterCollector(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range statusCodes {
		if statusLabels[i] != strconv.Itoa(code) {
			t.Fatalf("status label %q for %d", statusLabels[i], code)
		}
	}
	s.metrics.parts.Add(3)
	s.metrics.videoUnits.Add(5)
	s.metrics.request(kindPart, 200)
	s.metrics.request(kindPart, 200)
	s.metrics.request(kindMediaPlaylist, 304)
	s.metrics.partDelay.observe(3 * time.Millisecond)
	want := `
# HELP onair_hls_parts_total Parts (fragments) published.
# TYPE onair_hls_parts_total counter
onair_hls_parts_total 3
# HELP onair_hls_requests_total HLS origin requests by object kind and status.
# TYPE onair_hls_requests_total counter
onair_hls_requests_total{code="200",kind="part"} 2
onair_hls_requests_total{code="304",kind="playlist"} 1
# HELP onair_hls_part_publish_seconds Time from receiving the frame that closes a part to the part being listed.
# TYPE onair_hls_part_publish_seconds histogram
onair_hls_part_publish_seconds_bucket{le="0.001"} 0
onair_hls_part_publish_seconds_bucket{le="0.005"} 1
onair_hls_part_publish_seconds_bucket{le="0.01"} 1
onair_hls_part_publish_seconds_bucket{le="0.025"} 1
onair_hls_part_publish_seconds_bucket{le="0.05"} 1
onair_hls_part_publish_seconds_bucket{le="0.1"} 1
onair_hls_part_publish_seconds_bucket{le="0.25"} 1
onair_hls_part_publish_seconds_bucket{le="1"} 1
onair_hls_part_publish_seconds_bucket{le="+Inf"} 1
onair_hls_part_publish_seconds_sum 0.003
onair_hls_part_publish_seconds_count 1
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want), "onair_hls_parts_total",
		"onair_hls_requests_total", "onair_hls_part_publish_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(s, "onair_hls_access_units_total"); n != 2 {
		t.Errorf("%d access-unit series, want video and audio", n)
	}
	problems, err := testutil.CollectAndLint(s)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
