package moderation

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Moderator's counters, exported through Collect.
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

// The Moderator's metric descriptions.
var (
	descLive          = prometheus.NewDesc("onair_moderation_broadcasts", "Live broadcasts being moderated.", nil, nil)
	descSampled       = prometheus.NewDesc("onair_moderation_samples_total", "Keyframes sampled for screening.", nil, nil)
	descSuperseded    = prometheus.NewDesc("onair_moderation_samples_superseded_total", "Samples replaced by a newer one before screening.", nil, nil)
	descDecoded       = prometheus.NewDesc("onair_moderation_frames_decoded_total", "Keyframes decoded to JPEG.", nil, nil)
	descDecoderStarts = prometheus.NewDesc("onair_moderation_decoder_starts_total", "ffmpeg decoder processes started.", nil, nil)
	descDecoderStops  = prometheus.NewDesc("onair_moderation_decoder_stops_total", "ffmpeg decoder processes stopped, by why (idle, switch to another codec or size, failure, close).", []string{"reason"}, nil)
	descDecoders      = prometheus.NewDesc("onair_moderation_decoders", "Decoder workers shared by all broadcasts (the most ffmpeg processes at once).", nil, nil)
	descProcesses     = prometheus.NewDesc("onair_moderation_decoder_processes", "ffmpeg decoder processes running.", nil, nil)
	descDecodeQueue   = prometheus.NewDesc("onair_moderation_decode_queue", "Decode requests waiting for a worker.", nil, nil)
	descDecodeWait    = prometheus.NewDesc("onair_moderation_decode_wait_seconds", "Time a decode request waited for a worker.", nil, nil)
	descDecode        = prometheus.NewDesc("onair_moderation_decode_seconds", "Time to decode one keyframe in a running decoder.", nil, nil)
	descDropped       = prometheus.NewDesc("onair_moderation_decode_dropped_total", "Decode requests dropped undecoded, by why (queue_full, expired, canceled).", []string{"reason"}, nil)
	descPanics        = prometheus.NewDesc("onair_moderation_panics_total", "Panics recovered in moderation goroutines, by where.", []string{"where"}, nil)
	descScreened      = prometheus.NewDesc("onair_moderation_frames_screened_total", "Frames that got a final verdict.", nil, nil)
	descScreening     = prometheus.NewDesc("onair_moderation_screening_seconds", "Time from a keyframe's arrival at ingest to its final verdict.", nil, nil)
	descVerdicts      = prometheus.NewDesc("onair_moderation_verdicts_total", "Screener verdicts by action.", []string{"action"}, nil)
	descFailures      = prometheus.NewDesc("onair_moderation_failures_total", "Frames a stage could not process (decoder or screener).", []string{"stage"}, nil)
	descTakedowns     = prometheus.NewDesc("onair_moderation_takedowns_total", "Broadcasts taken down, by what decided.", []string{"by"}, nil)
	descFailOpen      = prometheus.NewDesc("onair_moderation_fail_open_total", "Broadcasts left up unscreened because screening failed (policy open).", nil, nil)
	descFailClosed    = prometheus.NewDesc("onair_moderation_fail_closed_total", "Broadcasts taken down because screening failed (policy closed).", nil, nil)
	descScreener      = prometheus.NewDesc("onair_moderation_screener_seconds", "Time spent in each screener.", []string{"screener"}, nil)

	moderatorDescs = []*prometheus.Desc{descLive, descSampled, descSuperseded, descDecoded, descDecoderStarts,
		descDecoderStops, descDecoders, descProcesses, descDecodeQueue, descDecodeWait, descDecode, descDropped,
		descPanics, descScreened, descScreening, descVerdicts, descFailures, descTakedowns, descFailOpen,
		descFailClosed, descScreener}
)

// Describe sends the descriptions of the moderation metrics (prometheus.Collector).
func (m *Moderator) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range moderatorDescs {
		ch <- d
	}
}

// Collect sends the moderation figures (prometheus.Collector).
func (m *Moderator) Collect(ch chan<- prometheus.Metric) {
	mt := m.metrics
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	byLabel := func(d *prometheus.Desc, values map[string]uint64) {
		for k, v := range values {
			counter(d, v, k)
		}
	}
	summary := func(d *prometheus.Desc, n uint64, sum time.Duration, labels ...string) {
		ch <- prometheus.MustNewConstSummary(d, n, sum.Seconds(), nil, labels...)
	}
	gauge(descLive, mt.live.Load())
	counter(descSampled, mt.sampled.Load())
	counter(descSuperseded, mt.superseded.Load())
	counter(descDecoded, mt.decoded.Load())
	counter(descDecoderStarts, mt.decoderStarts.Load())
	gauge(descDecoders, mt.decoders.Load())
	gauge(descProcesses, mt.processes.Load())
	gauge(descDecodeQueue, mt.decodeQueued.Load())
	counter(descFailOpen, mt.failOpen.Load())
	counter(descFailClosed, mt.failClosed.Load())

	mt.mu.Lock()
	defer mt.mu.Unlock()
	byLabel(descDecoderStops, mt.stops)
	summary(descDecodeWait, mt.waitN, mt.waitSum)
	summary(descDecode, mt.decodeN, mt.decodeSum)
	byLabel(descDropped, mt.dropped)
	byLabel(descPanics, mt.panics)
	counter(descScreened, mt.frames)
	summary(descScreening, mt.frames, mt.latencySum)
	for _, a := range []Action{Allow, Flag, Block} {
		counter(descVerdicts, mt.verdicts[a], string(a))
	}
	byLabel(descFailures, mt.failures)
	byLabel(descTakedowns, mt.takedowns)
	for k, n := range mt.screenerN {
		summary(descScreener, n, mt.screenerSum[k], k)
	}
}
