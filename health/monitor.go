// Package health measures each live broadcast's media and says, in plain
// words that name the OBS setting to change, what is wrong with it.
//
// A Monitor is an ingest.Consumer: per broadcast it reads every access unit
// (timestamps, keyframe flag, size, track) and keeps a sliding window of the
// last Window of media in one-second buckets. From the window it reports the
// keyframe interval (min/avg/max), the frame rate, the video and audio
// bitrates (the video's per-second min and max, which show a VBR encoder's
// swings), timestamp jumps, dropped frames, how far the media fell behind the
// wall clock (an encoder or an upload that cannot keep up), and the codec and
// profile from the tracks. Warnings appear only once enough media was seen to
// judge (MinMedia); each is logged once per broadcast.
//
// The per-unit work is a few additions into fixed arrays under an uncontended
// mutex: no allocation, no goroutine. Figures are computed only when asked
// (Report) and once per second of media (to log new warnings).
package health

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// Options configures a Monitor. Zero values take the defaults.
type Options struct {
	// SegmentDuration is the HLS segment length aimed at (hls-segment-duration):
	// a keyframe interval above it makes every segment longer. Default 1 s.
	SegmentDuration time.Duration
	// Window is how much recent media the figures cover. Default 30 s, at most 60 s.
	Window time.Duration
	// MinMedia is how much media must have been seen before anything is judged. Default 8 s.
	MinMedia time.Duration
	// Logger gets each warning once per broadcast; nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.SegmentDuration <= 0 {
		o.SegmentDuration = time.Second
	}
	if o.Window <= 0 {
		o.Window = 30 * time.Second
	}
	o.Window = min(o.Window, (ringSize-4)*time.Second)
	if o.MinMedia <= 0 {
		o.MinMedia = 8 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Monitor measures every live broadcast. It is safe for concurrent use.
type Monitor struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	live map[string]*stream // by channel: the newest broadcast of each
}

// New returns a Monitor; register it with ingest.Hub.AddConsumer.
func New(opts Options) *Monitor {
	opts = opts.withDefaults()
	return &Monitor{opts: opts, log: opts.Logger, live: map[string]*stream{}}
}

// Consume implements ingest.Consumer: it measures b until its feed ends.
func (m *Monitor) Consume(ctx context.Context, b *ingest.Broadcast, feed *ingest.Feed) {
	s := newStream(b, m.opts)
	m.mu.Lock()
	m.live[b.Channel] = s
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.live[b.Channel] == s {
			delete(m.live, b.Channel)
		}
		m.mu.Unlock()
	}()
	for {
		au, err := feed.Next(ctx)
		if err != nil {
			return
		}
		if s.add(&au) {
			m.logNew(s)
		}
	}
}

// Report returns the health of channel's live broadcast; ok is false when
// the channel is not live here.
func (m *Monitor) Report(channel string) (r Report, ok bool) {
	m.mu.Lock()
	s := m.live[channel]
	m.mu.Unlock()
	if s == nil {
		return Report{}, false
	}
	return s.report(), true
}

// logNew logs the warnings of s not logged before.
func (m *Monitor) logNew(s *stream) {
	s.mu.Lock()
	st := s.stats()
	fresh := st.warn &^ s.logged
	s.logged |= st.warn
	s.mu.Unlock()
	if fresh == 0 {
		return
	}
	for _, w := range st.warnings(fresh) {
		m.log.Warn("stream health: "+w.Message, "channel", s.b.Channel, "broadcast", s.b.ID, "code", w.Code)
	}
}
