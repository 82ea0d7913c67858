package moderation

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onairhq/onair/internal/promtext"
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
	p := promtext.NewWriter(w)
	p.Gauge("onair_moderation_broadcasts", "Live broadcasts being moderated.", mt.live.Load())
	p.Counter("onair_moderation_samples_total", "Keyframes sampled for screening.", mt.sampled.Load())
	p.Counter("onair_moderation_samples_superseded_total", "Samples replaced by a newer one before screening.", mt.superseded.Load())
	p.Counter("onair_moderation_frames_decoded_total", "Keyframes decoded to JPEG.", mt.decoded.Load())
	p.Counter("onair_moderation_decoder_starts_total", "ffmpeg decoder processes started.", mt.decoderStarts.Load())
	p.Counter("onair_moderation_frames_screened_total", "Frames that got a final verdict.", mt.frames)
	p.Family("onair_moderation_screening_seconds", "summary", "Time from a keyframe's arrival at ingest to its final verdict.")
	p.Sample("onair_moderation_screening_seconds_sum", "", mt.latencySum.Seconds())
	p.Sample("onair_moderation_screening_seconds_count", "", mt.frames)
	p.Family("onair_moderation_verdicts_total", "counter", "Screener verdicts by action.")
	for _, a := range []Action{Allow, Flag, Block} {
		p.Sample("onair_moderation_verdicts_total", fmt.Sprintf("action=%q", a), mt.verdicts[a])
	}
	promtext.ByLabel(p, "onair_moderation_failures_total", "counter", "Frames a stage could not process (decoder or screener).", "stage", mt.failures)
	promtext.ByLabel(p, "onair_moderation_takedowns_total", "counter", "Broadcasts taken down, by what decided.", "by", mt.takedowns)
	p.Counter("onair_moderation_fail_open_total", "Broadcasts left up unscreened because screening failed (policy open).", mt.failOpen.Load())
	p.Counter("onair_moderation_fail_closed_total", "Broadcasts taken down because screening failed (policy closed).", mt.failClosed.Load())
	p.Family("onair_moderation_screener_seconds", "summary", "Time spent in each screener.")
	for _, k := range slices.Sorted(maps.Keys(mt.screenerN)) {
		label := fmt.Sprintf("screener=%q", k)
		p.Sample("onair_moderation_screener_seconds_sum", label, mt.screenerSum[k].Seconds())
		p.Sample("onair_moderation_screener_seconds_count", label, mt.screenerN[k])
	}
	return p.Err()
}
