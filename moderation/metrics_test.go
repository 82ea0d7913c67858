package moderation

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestModeratorCollector checks the moderation figures as Prometheus gathers
// them, and that their names pass promlint.
func TestModeratorCollector(t *testing.T) {
	opts := DefaultOptions()
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	m.metrics.verdict(Block)
	m.metrics.takedown("webhook")
	m.metrics.screened(1500 * time.Millisecond)
	m.metrics.screenerTime("webhook", 250*time.Millisecond)
	want := `
# HELP onair_moderation_verdicts_total Screener verdicts by action.
# TYPE onair_moderation_verdicts_total counter
onair_moderation_verdicts_total{action="allow"} 0
onair_moderation_verdicts_total{action="block"} 1
onair_moderation_verdicts_total{action="flag"} 0
# HELP onair_moderation_takedowns_total Broadcasts taken down, by what decided.
# TYPE onair_moderation_takedowns_total counter
onair_moderation_takedowns_total{by="webhook"} 1
# HELP onair_moderation_screening_seconds Time from a keyframe's arrival at ingest to its final verdict.
# TYPE onair_moderation_screening_seconds summary
onair_moderation_screening_seconds_sum 1.5
onair_moderation_screening_seconds_count 1
# HELP onair_moderation_screener_seconds Time spent in each screener.
# TYPE onair_moderation_screener_seconds summary
onair_moderation_screener_seconds_sum{screener="webhook"} 0.25
onair_moderation_screener_seconds_count{screener="webhook"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "onair_moderation_verdicts_total",
		"onair_moderation_takedowns_total", "onair_moderation_screening_seconds", "onair_moderation_screener_seconds"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(m)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
