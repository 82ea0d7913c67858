// Package segmenter turns each live broadcast into HLS with one gohlslib muxer
// per broadcast, and serves it as a CDN-friendly origin under /hls/{channel}/.
//
// What a player sees:
//   - Live: /hls/{channel}/index.m3u8 (multivariant) pointing at gohlslib's
//     media playlists (video1_stream.m3u8, audio2_stream.m3u8; main_stream.m3u8
//     for mpegts). The first request waits until the first segment exists.
//   - End (feed ended, or the hub's context done): the last frames are flushed
//     into a final segment, the playlists get EXT-X-ENDLIST and lose the
//     preload hint, and stay served (with their media) for EndedLinger; then
//     every path of the channel answers 404.
//   - Takedown (Remove): every path answers 404 at once.
//   - New broadcast on the channel: replaces the old playlist at once. Its
//     media sequence numbers start after the previous broadcast's last one
//     (and above a wall-clock floor, so also after a restart), with a new
//     EXT-X-DISCONTINUITY-SEQUENCE, new init segment and new URIs (gohlslib's
//     random prefix), so a reloading player never sees numbers go back and
//     a cached blocking answer never refers to another broadcast.
//
// gohlslib keeps the SegmentCount segments of the window (and their parts) in
// RAM; an ended stream keeps a frozen copy of the same window until it expires.
package segmenter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// Variant names accepted in Options.Variant.
const (
	VariantLowLatency = "lowlatency"
	VariantFMP4       = "fmp4"
	VariantMPEGTS     = "mpegts"
)

// Defaults applied by New to zero-valued options.
const (
	DefaultVariant         = VariantLowLatency
	DefaultSegmentDuration = time.Second
	DefaultPartDuration    = 200 * time.Millisecond
	DefaultSegmentCount    = 7
	DefaultEndedLinger     = 30 * time.Second
)

// Options configure a Segmenter. Zero values take the Default* constants.
type Options struct {
	// Variant is "lowlatency" (LL-HLS, fMP4 parts), "fmp4" or "mpegts".
	Variant string
	// SegmentDuration is the minimum segment length; segments are cut at the
	// first keyframe after it, so the publisher's GOP bounds the real length.
	SegmentDuration time.Duration
	// PartDuration is the minimum LL-HLS part length.
	PartDuration time.Duration
	// SegmentCount is how many segments a playlist keeps (LL-HLS needs at least 7).
	SegmentCount int
	// EndedLinger is how long an ended broadcast's playlist stays served
	// (with EXT-X-ENDLIST) before its channel answers 404.
	EndedLinger time.Duration
	// Visible reports whether a channel's HLS may be served (e.g. not before a
	// moderation verdict); nil means always.
	Visible func(channel string) bool
	// OnFailure is told when a broadcast's media cannot be muxed (the muxer
	// rejected it); the caller may end the broadcast. It may be nil.
	OnFailure func(b *ingest.Broadcast, err error)
	// Logger receives the segmenter's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Segmenter muxes every live broadcast into HLS and keeps the per-channel
// streams the origin handler serves. It implements ingest.Consumer.
type Segmenter struct {
	opts    Options
	log     *slog.Logger
	metrics metrics

	ctx    context.Context // done when Close is called
	cancel context.CancelFunc

	mu       sync.Mutex
	channels map[string]*channelState
	closed   bool
	wg       sync.WaitGroup // Consume calls in flight
}

// channelState is what a channel keeps across its broadcasts, so that a new
// broadcast continues the media and discontinuity sequence numbers.
type channelState struct {
	cur        *stream // live or lingering; nil when nothing is served
	nextMSN    uint64  // lowest media sequence number the next broadcast may use
	nextDiscSq uint64  // discontinuity sequence number for the next broadcast
}

var _ ingest.Consumer = (*Segmenter)(nil)

// New checks opts, fills in defaults and returns a Segmenter.
func New(opts Options) (*Segmenter, error) {
	if opts.Variant == "" {
		opts.Variant = DefaultVariant
	}
	switch opts.Variant {
	case VariantLowLatency, VariantFMP4, VariantMPEGTS:
	default:
		return nil, fmt.Errorf("segmenter: unknown variant %q (want lowlatency, fmp4 or mpegts)", opts.Variant)
	}
	if opts.SegmentDuration == 0 {
		opts.SegmentDuration = DefaultSegmentDuration
	}
	if opts.PartDuration == 0 {
		opts.PartDuration = DefaultPartDuration
	}
	if opts.SegmentCount == 0 {
		opts.SegmentCount = DefaultSegmentCount
	}
	if opts.EndedLinger == 0 {
		opts.EndedLinger = DefaultEndedLinger
	}
	switch {
	case opts.SegmentDuration < 100*time.Millisecond || opts.SegmentDuration > time.Minute:
		return nil, fmt.Errorf("segmenter: segment duration %v out of range [100ms, 1m]", opts.SegmentDuration)
	case opts.PartDuration < 10*time.Millisecond || opts.PartDuration > opts.SegmentDuration:
		return nil, fmt.Errorf("segmenter: part duration %v out of range [10ms, segment duration]", opts.PartDuration)
	case opts.Variant == VariantLowLatency && opts.SegmentCount < 7:
		return nil, fmt.Errorf("segmenter: low-latency HLS needs a segment count of at least 7, got %d", opts.SegmentCount)
	case opts.SegmentCount < 3:
		return nil, fmt.Errorf("segmenter: segment count must be at least 3, got %d", opts.SegmentCount)
	case opts.EndedLinger < 0:
		return nil, fmt.Errorf("segmenter: negative ended linger %v", opts.EndedLinger)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Segmenter{
		opts:     opts,
		log:      log.With("component", "segmenter"),
		ctx:      ctx,
		cancel:   cancel,
		channels: make(map[string]*channelState),
	}, nil
}

// Consume muxes one broadcast until its feed ends or ctx is done; then the
// playlist is ended (EXT-X-ENDLIST) and stays served for EndedLinger.
func (s *Segmenter) Consume(ctx context.Context, b *ingest.Broadcast, feed *ingest.Feed) {
	log := s.log.With("channel", b.Channel, "broadcast", b.ID)
	if !ingest.ValidChannelName(b.Channel) {
		log.Error("refusing broadcast: invalid channel name")
		drain(ctx, feed)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	st, err := s.start(b, log)
	if err != nil {
		log.Error("cannot mux broadcast", "err", err)
		s.metrics.failures.Add(1)
		if s.opts.OnFailure != nil {
			s.opts.OnFailure(b, err)
		}
		drain(ctx, feed)
		return
	}
	defer s.wg.Done()

	err = st.run(ctx, feed)
	switch {
	case errors.Is(err, ingest.ErrEnded), ctx.Err() != nil:
		// A normal end, or the hub/server stopping: end the playlist properly.
		log.Info("broadcast ended, ending playlist", "linger", s.opts.EndedLinger)
	case err != nil:
		log.Error("cannot mux broadcast, ending its playlist", "err", err)
		s.metrics.failures.Add(1)
		if s.opts.OnFailure != nil {
			s.opts.OnFailure(b, err)
		}
		s.finish(st)     // end the playlist with what was muxed so far
		drain(ctx, feed) // and keep the hub's queue moving until ingest ends it
		return
	}
	s.finish(st)
}

// drain discards a feed until it ends, so the hub never waits on us.
func drain(ctx context.Context, feed *ingest.Feed) {
	for {
		if _, err := feed.Next(ctx); err != nil {
			return
		}
	}
}

// start creates the stream for b and makes it the one its channel serves,
// replacing (and closing) whatever the channel served before.
func (s *Segmenter) start(b *ingest.Broadcast, log *slog.Logger) (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("segmenter is closed")
	}
	cs := s.channels[b.Channel]
	if cs == nil {
		cs = &channelState{}
		s.channels[b.Channel] = cs
	}
	// Sequence numbers continue across broadcasts; the wall-clock floor keeps
	// them from going backwards across a restart too (see seqFloor).
	msn := max(cs.nextMSN, seqFloor(time.Now()))
	disc := max(cs.nextDiscSq, seqFloor(time.Now()))
	st, err := newStream(s, b, log, msn, disc)
	if err != nil {
		return nil, fmt.Errorf("starting muxer: %w", err)
	}
	if old := cs.cur; old != nil {
		log.Info("new broadcast replaces the channel's previous playlist", "previous", old.b.ID)
		old.close()
	}
	cs.cur = st
	cs.nextDiscSq = disc + 1
	s.wg.Add(1)
	s.metrics.broadcasts.Add(1)
	return st, nil
}

// seqFloor is a lower bound for the first media sequence number of a new
// broadcast that grows by two per second of wall-clock time. A playlist's
// sequence grows by at most about one per SegmentDuration (>= 100 ms, but 1 s by
// default) plus the seven LL-HLS start gaps, so broadcasts longer than a few
// seconds never see a later broadcast start below their last number, even
// across a process restart that lost the in-memory counter.
func seqFloor(now time.Time) uint64 {
	const epoch = 1_700_000_000 // 2023-11-14; keeps the numbers readable
	sec := now.Unix() - epoch
	if sec < 0 {
		return 0
	}
	return uint64(sec) * 2
}

// finish ends st's playlist and schedules its removal after EndedLinger.
func (s *Segmenter) finish(st *stream) {
	final := st.end()
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.channels[st.b.Channel]
	if cs == nil || cs.cur != st {
		st.close() // removed or replaced meanwhile
		return
	}
	cs.nextMSN = max(cs.nextMSN, final+1)
	if !st.hasFinal() || s.closed {
		cs.cur = nil
		st.close()
		return
	}
	t := time.AfterFunc(s.opts.EndedLinger, func() { s.expire(st) })
	st.mu.Lock()
	st.linger = t
	st.mu.Unlock()
}

// expire drops st once its linger is over, unless it was replaced already.
func (s *Segmenter) expire(st *stream) {
	s.mu.Lock()
	if cs := s.channels[st.b.Channel]; cs != nil && cs.cur == st {
		cs.cur = nil
	}
	s.mu.Unlock()
	st.close()
}

// Remove drops a channel's HLS at once (a takedown): every path of the channel
// answers 404 from now on, also while its broadcast is still being fed.
func (s *Segmenter) Remove(channel string) {
	s.mu.Lock()
	cs := s.channels[channel]
	var st *stream
	if cs != nil {
		st, cs.cur = cs.cur, nil
	}
	s.mu.Unlock()
	if st != nil {
		s.log.Info("channel HLS removed", "channel", channel, "broadcast", st.b.ID)
		st.close()
	}
}

// lookup returns the stream a channel currently serves, or nil.
func (s *Segmenter) lookup(channel string) *stream {
	if s.opts.Visible != nil && !s.opts.Visible(channel) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs := s.channels[channel]; cs != nil && cs.cur != nil && !cs.cur.isClosed() {
		return cs.cur
	}
	return nil
}

// Handler returns the HLS origin handler. Mount it at "/hls/" without
// stripping the prefix; it also accepts paths of the form "{channel}/{object}".
func (s *Segmenter) Handler() http.Handler { return &Origin{seg: s} }

// Close ends every stream at once and waits for the segmenter's goroutines.
// Consume calls still running return promptly.
func (s *Segmenter) Close() {
	s.mu.Lock()
	s.closed = true
	var streams []*stream
	for _, cs := range s.channels {
		if cs.cur != nil {
			streams = append(streams, cs.cur)
			cs.cur = nil
		}
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	for _, st := range streams {
		st.close()
	}
}

// minSegment is the length at which the muxer may cut a segment at the next
// keyframe. It sits under SegmentDuration so that a keyframe one SegmentDuration
// after the segment's start is never skipped (which would double every segment
// and the target duration): gohlslib gives the broadcast's first keyframe a DTS
// equal to its PTS, up to the B-frame reorder delay (2–4 frames) late, and RTMP
// rounds timestamps to milliseconds.
func (s *Segmenter) minSegment() time.Duration {
	return s.opts.SegmentDuration - min(s.opts.SegmentDuration/5, 200*time.Millisecond)
}
