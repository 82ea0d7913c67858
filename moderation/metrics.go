package moderation

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the Moderator's counters, written out in Prometheus text format.
type metrics struct {
	live          atomic.Int64
	sampled       atomic.Uint64
	superseded    atomic.Uint64
	decoded       atomic.Uint64
	decoderStarts atomic.Uint64
	failOpen      atomic.Uint64
	failClosed    atomic.Uint64

	mu          sync.Mutex
	frames      uint64 // frames with a verdict (screened)
	latencySum  time.Duration
	verdicts    map[Action]uint64
	failures    map[string]uint64
	takedowns   map[string]uint64
	screenerSum map[string]time.Duration
	screenerN   map[string]uint64
}

func newMetrics() *metrics {
	return &metrics{
		verdicts:    make(map[Action]uint64),
		failures:    make(map[string]uint64),
		takedowns:   make(map[string]uint64),
		screenerSum: make(map[string]time.Duration),
		screenerN:   make(map[string]uint64),
	}
}

func (m *metrics) verdict(a Action) {
	m.mu.Lock()
	m.verdicts[a]++
	m.mu.Unlock()
}

func (m *metrics) failure(stage string) {
	m.mu.Lock()
	m.failures[stage]++
	m.mu.Unlock()
}

func (m *metrics) takedown(by string) {
	m.mu.Lock()
	m.takedowns[by]++
	m.mu.Unlock()
}

// screened counts a frame that got a final verdict, latency measured from
// its arrival at ingest.
func (m *metrics) screened(latency time.Duration) {
	m.mu.Lock()
	m.frames++
	m.latencySum += latency
	m.mu.Unlock()
}

func (m *metrics) screenerTime(name string, d time.Duration) {
	m.mu.Lock()
	m.screenerSum[name] += d
	m.screenerN[name]++
	m.mu.Unlock()
}

// WriteMetrics writes the moderation metrics in the Prometheus text format.
func (m *Moderator) WriteMetrics(w io.Writer) error {
	mt := m.metrics
	mt.mu.Lock()
	defer mt.mu.Unlock()
	var err error
	p := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	p("# HELP onair_moderation_broadcasts Live broadcasts being moderated.\n# TYPE onair_moderation_broadcasts gauge\nonair_moderation_broadcasts %d\n", mt.live.Load())
	p("# HELP onair_moderation_samples_total Keyframes sampled for screening.\n# TYPE onair_moderation_samples_total counter\nonair_moderation_samples_total %d\n", mt.sampled.Load())
	p("# HELP onair_moderation_samples_superseded_total Samples replaced by a newer one before screening.\n# TYPE onair_moderation_samples_superseded_total counter\nonair_moderation_samples_superseded_total %d\n", mt.superseded.Load())
	p("# HELP onair_moderation_frames_decoded_total Keyframes decoded to JPEG.\n# TYPE onair_moderation_frames_decoded_total counter\nonair_moderation_frames_decoded_total %d\n", mt.decoded.Load())
	p("# HELP onair_moderation_decoder_starts_total ffmpeg decoder processes started.\n# TYPE onair_moderation_decoder_starts_total counter\nonair_moderation_decoder_starts_total %d\n", mt.decoderStarts.Load())
	p("# HELP onair_moderation_frames_screened_total Frames that got a final verdict.\n# TYPE onair_moderation_frames_screened_total counter\nonair_moderation_frames_screened_total %d\n", mt.frames)
	p("# HELP onair_moderation_screening_seconds Time from a keyframe's arrival at ingest to its final verdict.\n# TYPE onair_moderation_screening_seconds summary\nonair_moderation_screening_seconds_sum %g\nonair_moderation_screening_seconds_count %d\n", mt.latencySum.Seconds(), mt.frames)
	p("# HELP onair_moderation_verdicts_total Screener verdicts by action.\n# TYPE onair_moderation_verdicts_total counter\n")
	for _, a := range []Action{Allow, Flag, Block} {
		p("onair_moderation_verdicts_total{action=%q} %d\n", a, mt.verdicts[a])
	}
	p("# HELP onair_moderation_failures_total Frames a stage could not process (decoder or screener).\n# TYPE onair_moderation_failures_total counter\n")
	for _, k := range sortedKeys(mt.failures) {
		p("onair_moderation_failures_total{stage=%q} %d\n", k, mt.failures[k])
	}
	p("# HELP onair_moderation_takedowns_total Broadcasts taken down, by what decided.\n# TYPE onair_moderation_takedowns_total counter\n")
	for _, k := range sortedKeys(mt.takedowns) {
		p("onair_moderation_takedowns_total{by=%q} %d\n", k, mt.takedowns[k])
	}
	p("# HELP onair_moderation_fail_open_total Broadcasts left up unscreened because screening failed (policy open).\n# TYPE onair_moderation_fail_open_total counter\nonair_moderation_fail_open_total %d\n", mt.failOpen.Load())
	p("# HELP onair_moderation_fail_closed_total Broadcasts taken down because screening failed (policy closed).\n# TYPE onair_moderation_fail_closed_total counter\nonair_moderation_fail_closed_total %d\n", mt.failClosed.Load())
	p("# HELP onair_moderation_screener_seconds Time spent in each screener.\n# TYPE onair_moderation_screener_seconds summary\n")
	for _, k := range sortedKeys(mt.screenerN) {
		p("onair_moderation_screener_seconds_sum{screener=%q} %g\nonair_moderation_screener_seconds_count{screener=%q} %d\n", k, mt.screenerSum[k].Seconds(), k, mt.screenerN[k])
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
