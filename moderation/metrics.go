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

	// The decode pool.
	decoders     atomic.Int64 // workers
	processes    atomic.Int64 // ffmpeg processes running
	decodeQueued atomic.Int64 // requests waiting

	mu          sync.Mutex
	frames      uint64 // frames with a verdict (screened)
	latencySum  time.Duration
	verdicts    map[Action]uint64
	failures    map[string]uint64
	takedowns   map[string]uint64
	screenerSum map[string]time.Duration
	screenerN   map[string]uint64
	waitSum     time.Duration // in the decode queue
	waitN       uint64
	decodeSum   time.Duration // in a running decoder
	decodeN     uint64
	dropped     map[string]uint64 // decode requests, by reason
	stops       map[string]uint64 // decoder processes, by reason
	panics      map[string]uint64 // recovered, by where
}

func newMetrics() *metrics {
	return &metrics{
		verdicts:    make(map[Action]uint64),
		failures:    make(map[string]uint64),
		takedowns:   make(map[string]uint64),
		screenerSum: make(map[string]time.Duration),
		screenerN:   make(map[string]uint64),
		dropped:     make(map[string]uint64),
		stops:       make(map[string]uint64),
		panics:      make(map[string]uint64),
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

func (m *metrics) decodeWaited(d time.Duration) {
	m.mu.Lock()
	m.waitSum += d
	m.waitN++
	m.mu.Unlock()
}

func (m *metrics) decodeTook(d time.Duration) {
	m.mu.Lock()
	m.decodeSum += d
	m.decodeN++
	m.mu.Unlock()
}

func (m *metrics) decodeDropped(reason string) {
	m.mu.Lock()
	m.dropped[reason]++
	m.mu.Unlock()
}

func (m *metrics) decoderStopped(reason string) {
	m.mu.Lock()
	m.stops[reason]++
	m.mu.Unlock()
}

func (m *metrics) panicked(where string) {
	m.mu.Lock()
	m.panics[where]++
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
	promtext.ByLabel(p, "onair_moderation_decoder_stops_total", "counter", "ffmpeg decoder processes stopped, by why (idle, switch to another codec or size, failure, close).", "reason", mt.stops)
	p.Gauge("onair_moderation_decoders", "Decoder workers shared by all broadcasts (the most ffmpeg processes at once).", mt.decoders.Load())
	p.Gauge("onair_moderation_decoder_processes", "ffmpeg decoder processes running.", mt.processes.Load())
	p.Gauge("onair_moderation_decode_queue", "Decode requests waiting for a worker.", mt.decodeQueued.Load())
	p.Family("onair_moderation_decode_wait_seconds", "summary", "Time a decode request waited for a worker.")
	p.Sample("onair_moderation_decode_wait_seconds_sum", "", mt.waitSum.Seconds())
	p.Sample("onair_moderation_decode_wait_seconds_count", "", mt.waitN)
	p.Family("onair_moderation_decode_seconds", "summary", "Time to decode one keyframe in a running decoder.")
	p.Sample("onair_moderation_decode_seconds_sum", "", mt.decodeSum.Seconds())
	p.Sample("onair_moderation_decode_seconds_count", "", mt.decodeN)
	promtext.ByLabel(p, "onair_moderation_decode_dropped_total", "counter", "Decode requests dropped undecoded, by why (queue_full, expired, canceled).", "reason", mt.dropped)
	promtext.ByLabel(p, "onair_moderation_panics_total", "counter", "Panics recovered in moderation goroutines, by where.", "where", mt.panics)
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
