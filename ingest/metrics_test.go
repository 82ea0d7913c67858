package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHubCollector checks the hub's figures as Prometheus gathers them: the
// counters it keeps come out under their names, and the names pass promlint.
func TestHubCollector(t *testing.T) {
	h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "one", Keys: []string{"k"}}}})
	if err != nil {
		t.Fatal(err)
	}
	h.stats.bytes.Add(1234)
	h.stats.refuse("bad_key")
	h.stats.refuse("bad_key")
	h.stats.ended(EndStopped)
	h.stats.publishIn.observe(30 * time.Millisecond)
	h.stats.publishIn.observe(2 * time.Second)
	want := `
# HELP onair_ingest_received_bytes_total Media bytes received from publishers.
# TYPE onair_ingest_received_bytes_total counter
onair_ingest_received_bytes_total 1234
# HELP onair_ingest_refused_publishes_total Refused connections and publishes, by reason.
# TYPE onair_ingest_refused_publishes_total counter
onair_ingest_refused_publishes_total{reason="bad_key"} 2
# HELP onair_ingest_broadcasts_ended_total Broadcasts ended, by reason.
# TYPE onair_ingest_broadcasts_ended_total counter
onair_ingest_broadcasts_ended_total{reason="stopped"} 1
# HELP onair_ingest_live_broadcasts Broadcasts currently open (including those in their grace period).
# TYPE onair_ingest_live_broadcasts gauge
onair_ingest_live_broadcasts 0
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(want), "onair_ingest_received_bytes_total",
		"onair_ingest_refused_publishes_total", "onair_ingest_broadcasts_ended_total", "onair_ingest_live_broadcasts"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(h, "onair_ingest_publish_accept_seconds"); n != 1 {
		t.Errorf("%d publish-accept histograms, want 1", n)
	}
	problems, err := testutil.CollectAndLint(h)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
