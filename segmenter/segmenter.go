// Package segmenter is onair's HLS packager and origin: it turns each live
// broadcast into Low-Latency HLS (fMP4 parts), plain fMP4 or MPEG-TS
// segments, and serves them under /hls/{channel}/ with the headers a CDN
// edge needs.
//
// What a player sees:
//   - Live: /hls/{channel}/index.m3u8 (multivariant: one variant, audio and
//     video muxed) naming stream.m3u8, the media playlist. The first part is
//     listed as soon as it is complete (about one part duration after the
//     first keyframe); a request that comes before waits for it.
//   - Segments are cut at keyframes about SegmentDuration apart. A keyframe
//     interval longer than EXT-X-TARGETDURATION allows makes the packager cut
//     between keyframes (such segments and parts are not INDEPENDENT), so the
//     target duration, fixed for the playlist's life, is never exceeded.
//   - End (the publisher stops or does not return within the grace period,
//     or the server stops): the last frames close a final segment, the
//     playlist gets EXT-X-ENDLIST, and it stays served for EndedLinger; then
//     every path of the channel answers 404.
//   - Publisher returns within the grace period with the same tracks: the
//     playlist goes on, a new segment starting at its first keyframe, without
//     EXT-X-DISCONTINUITY (the timeline continues; a recording marks one).
//   - Codec change mid-stream (ingest ends the broadcast and starts a new
//     one): the playlist goes on with EXT-X-DISCONTINUITY and a new EXT-X-MAP.
//   - Takedown (Remove, or a broadcast ended as taken down): every path
//     answers 404 at once.
//   - A later broadcast on the channel: a new playlist whose media sequence
//     numbers continue after the previous one's (and above a wall-clock floor,
//     so also after a restart) and whose discontinuity sequence counts on; URIs
//     carry a per-broadcast token, so no URI is ever reused.
//
// Memory: a stream keeps the segments of its window as their parts' bytes,
// each part encoded once into a slice of its exact size; a segment is served
// as its parts in order, never copied.
package segmenter

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
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

// continueWait is how long a playlist whose broadcast ended for a codec
// change stays open for the channel's next broadcast to continue it.
const continueWait = 5 * time.Second

// Options configure a Segmenter. Zero values take the Default* constants.
type Options struct {
	// Variant is "lowlatency" (LL-HLS, fMP4 parts), "fmp4" or "mpegts".
	Variant string
	// SegmentDuration is the segment length aimed at: segments are cut at the
	// first keyframe a little under it. EXT-X-TARGETDURATION is this rounded
	// up to whole seconds.
	SegmentDuration time.Duration
	// PartDuration is the LL-HLS part length aimed at; PART-TARGET is a
	// millisecond more, for RTMP's millisecond timestamps.
	PartDuration time.Duration
	// SegmentCount is how many complete segments a playlist keeps (LL-HLS needs at least 7).
	SegmentCount int
	// EndedLinger is how long an ended broadcast's playlist stays served
	// (with EXT-X-ENDLIST) before its channel answers 404.
	EndedLinger time.Duration
	// Visible reports whether a channel's HLS may be served (e.g. not before a
	// moderation verdict); nil means always.
	Visible func(channel string) bool
	// OnFailure is told when a broadcast's media cannot be packaged; the
	// caller may end the broadcast. It may be nil.
	OnFailure func(b *ingest.Broadcast, err error)
	// OnRemove, if set, is told the URL paths of every object a removed
	// channel's window listed or hinted at (a takedown), for purging them
	// from caches in front of the origin.
	OnRemove func(channel string, paths []string)
	// Record, if set, is asked at each broadcast's start (fMP4 variants
	// only) for a Sink to hand its media to as it is packaged; nil: the
	// broadcast is not recorded.
	Record func(b *ingest.Broadcast, init []byte) Sink
	// Logger receives the segmenter's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Sink receives one broadcast's fMP4 media as it is packaged (see
// Options.Record), on the packager's goroutine: it must not block. The
// bytes are never modified afterwards.
type Sink interface {
	// Part is the next part; first says it starts a segment (disc: after a
	// discontinuity, or where a publisher that returned starts; pdt: the
	// segment's date), last that it completes one.
	Part(data []byte, dur time.Duration, first, last, disc bool, pdt time.Time)
	// End says the broadcast ended: no more parts come.
	End(reason ingest.EndReason)
}

// config is what the packager and the origin derive from Options.
type config struct {
	lowLatency   bool
	mpegts       bool
	version      int           // EXT-X-VERSION
	segment      time.Duration // segment length aimed at
	minSegment   time.Duration // shortest segment a keyframe may close
	target       time.Duration // EXT-X-TARGETDURATION
	targetSecs   int
	part         time.Duration // PartDuration: the part length aimed at
	partTarget   time.Duration // PART-TARGET until a window fits its own to the frames
	skipUntil    time.Duration // CAN-SKIP-UNTIL
	maxParts     int           // more parts than any segment can hold
	maxGap       time.Duration // a timestamp jump beyond this is a discontinuity
	hold         time.Duration // how long a request may wait for content
	linger       time.Duration
	mediaAge     int // Cache-Control max-age of media, seconds
	segmentCount int
}

func newConfig(o Options) config {
	c := config{
		lowLatency:   o.Variant == VariantLowLatency,
		mpegts:       o.Variant == VariantMPEGTS,
		segment:      o.SegmentDuration,
		part:         o.PartDuration,
		segmentCount: o.SegmentCount,
		linger:       o.EndedLinger,
	}
	c.targetSecs = int((o.SegmentDuration + time.Second - 1) / time.Second)
	c.target = time.Duration(c.targetSecs) * time.Second
	// A keyframe one SegmentDuration after the segment's start must never be
	// missed (RTMP rounds timestamps to milliseconds, B-frames shift them).
	c.minSegment = c.segment - min(c.segment/5, 200*time.Millisecond)
	// RTMP timestamps are whole milliseconds, so the frames of a part can come
	// to a millisecond more than PartDuration where they wobble (six frames
	// at 30 fps of 33+34+34+33+34+33 ms): PART-TARGET allows for it, as every
	// part must be within it. Each window fits its own to a whole number of
	// its frames (packager.fitPartTarget); this one is the one listed before.
	c.partTarget = c.part + time.Millisecond
	c.skipUntil = 6 * c.target
	// Every part but a segment's last is at least half a part target long
	// (see packager.cutPart); a segment is under target + 0.5 s.
	c.maxParts = int((c.target+time.Second/2)/(c.part/2)) + 2
	c.maxGap = c.target
	c.hold = 3 * c.target
	c.mediaAge = int((time.Duration(c.segmentCount+2)*c.target + c.linger + time.Second - 1) / time.Second)
	switch {
	case c.lowLatency:
		c.version = 9 // EXT-X-SKIP
	case c.mpegts:
		c.version = 3
	default:
		c.version = 7 // EXT-X-MAP in a media playlist without I-frames
	}
	return c
}

// Segmenter packages every live broadcast into HLS and keeps the per-channel
// windows the origin handler serves. It implements ingest.Consumer.
type Segmenter struct {
	opts    Options
	cfg     config
	log     *slog.Logger
	metrics metrics
	// gzip holds idle playlist compressors (~250 KB each). A channel rather
	// than a sync.Pool: a collection would empty a pool, and a busy origin
	// collects often.
	gzip chan *gzip.Writer

	ctx    context.Context // done when Close is called
	cancel context.CancelFunc

	mu       sync.Mutex
	channels map[string]*channelState
	closed   bool
	wg       sync.WaitGroup // Consume calls in flight
}

// channelState is what a channel keeps across its broadcasts.
type channelState struct {
	win      *window       // served; nil when nothing is
	writing  chan struct{} // closed when the current writer returns; nil if none
	timer    *time.Timer   // expiry of an ended window, or of one awaiting continuation
	nextMSN  uint64        // first MSN of the next window
	nextDisc uint64        // its discontinuity sequence
	resumed  bool          // nextMSN continues another node's playlist: no wall-clock floor
}

// advance moves the channel's next window past win.
func (cs *channelState) advance(win *window) {
	msn, disc := win.next()
	cs.nextMSN, cs.nextDisc = max(cs.nextMSN, msn), max(cs.nextDisc, disc)
}

// Resume makes the channel's next playlist continue one another node served
// (its publisher moved here): it starts at media sequence msn, with a
// discontinuity sequence of at least disc. A player that followed the other
// node's playlist up to segment msn-1 goes on in this one where it was
// (hls.js places a playlist starting right after the last segment it knew
// exactly there, and anything further off ahead of its buffer, where it
// stalls).
func (s *Segmenter) Resume(channel string, msn, disc uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.channels[channel]
	if cs == nil {
		cs = &channelState{}
		s.channels[channel] = cs
	}
	cs.nextMSN, cs.nextDisc = max(cs.nextMSN, msn), max(cs.nextDisc, disc)
	cs.resumed = true
}

// Position returns where another node continuing the channel's playlist
// starts: the media sequence after its last complete segment and the next
// discontinuity sequence. ok is false when the channel has no playlist here.
func (s *Segmenter) Position(channel string) (msn, disc uint64, ok bool) {
	s.mu.Lock()
	cs := s.channels[channel]
	var win *window
	if cs != nil {
		win = cs.win
	}
	s.mu.Unlock()
	if win == nil {
		return 0, 0, false
	}
	msn, disc = win.resumePoint()
	return msn, disc, true
}

// Serves reports whether the channel has a playlist here (live, in its
// grace, or ended and lingering).
func (s *Segmenter) Serves(channel string) bool { return s.lookup(channel) != nil }

// Ready reports whether the channel's playlist here lists a complete segment.
func (s *Segmenter) Ready(channel string) bool {
	win := s.lookup(channel)
	if win == nil {
		return false
	}
	win.mu.Lock()
	defer win.mu.Unlock()
	return win.completeLocked()
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
	case opts.PartDuration < 50*time.Millisecond || opts.PartDuration > opts.SegmentDuration:
		return nil, fmt.Errorf("segmenter: part duration %v out of range [50ms, segment duration]", opts.PartDuration)
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
	s := &Segmenter{
		opts:     opts,
		cfg:      newConfig(opts),
		log:      log.With("component", "segmenter"),
		ctx:      ctx,
		cancel:   cancel,
		channels: make(map[string]*channelState),
	}
	s.gzip = make(chan *gzip.Writer, 2*runtime.GOMAXPROCS(0))
	return s, nil
}

// Consume packages one broadcast until its feed ends or ctx is done.
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

	win, release, err := s.attach(ctx, b.Channel)
	if err != nil {
		log.Warn("cannot package broadcast", "err", err)
		drain(ctx, feed)
		return
	}
	defer release()
	s.metrics.broadcasts.Add(1)

	p, err := newPackager(&s.cfg, &s.metrics, win, b, log)
	if err == nil && s.opts.Record != nil && !s.cfg.mpegts {
		p.record = s.opts.Record
	}
	if err == nil {
		err = p.run(ctx, feed)
	}
	reason := ingest.EndReasonOf(err)
	if p != nil && p.sink != nil {
		defer func() { p.sink.End(reason) }() // after the last part
	}
	switch {
	case reason == ingest.EndTakenDown:
		s.Remove(b.Channel)
	case reason == ingest.EndMoved:
		// Another node publishes the channel now; an origin here relays its playlist.
		log.Info("the channel is published on another node now: its playlist here is dropped")
		if win := s.drop(b.Channel); win != nil {
			win.close()
		}
	case reason == ingest.EndNewTracks:
		log.Info("codec parameters changed: the playlist continues with the next broadcast")
		p.finish(false)
		s.expireLater(b.Channel, win, continueWait)
	case reason != "" || ctx.Err() != nil:
		log.Info("broadcast ended, ending playlist", "reason", string(reason), "linger", s.opts.EndedLinger)
		p.finish(true)
		s.expireLater(b.Channel, win, s.opts.EndedLinger)
	default:
		log.Error("cannot package broadcast, ending its playlist", "err", err)
		s.metrics.failures.Add(1)
		if p != nil {
			p.finish(true)
		}
		s.expireLater(b.Channel, win, s.opts.EndedLinger)
		if s.opts.OnFailure != nil {
			s.opts.OnFailure(b, err)
		}
		drain(ctx, feed) // keep the hub's queue moving until ingest ends it
	}
}

// drain discards a feed until it ends, so the hub never waits on us.
func drain(ctx context.Context, feed *ingest.Feed) {
	for {
		if _, err := feed.Next(ctx); err != nil {
			return
		}
	}
}

// attach makes the caller the channel's writer and returns the window to
// write into: the channel's live one (continued after a codec change), or a
// new one replacing an ended one. A writer still finishing the channel's
// previous broadcast is waited for first, so windows see one writer at a time.
func (s *Segmenter) attach(ctx context.Context, channel string) (*window, func(), error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, nil, errors.New("segmenter is closed")
		}
		cs := s.channels[channel]
		if cs == nil {
			cs = &channelState{}
			s.channels[channel] = cs
		}
		if busy := cs.writing; busy != nil {
			s.mu.Unlock()
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		if cs.timer != nil {
			cs.timer.Stop()
			cs.timer = nil
		}
		if w := cs.win; w != nil && w.isEnded() {
			cs.advance(w)
			w.close()
			cs.win = nil
		}
		if cs.win == nil {
			first := max(cs.nextMSN, seqFloor(time.Now()))
			if cs.resumed {
				// Close to the other node's numbers, which a player compares with.
				first, cs.resumed = cs.nextMSN, false
			}
			cs.win = newWindow(&s.cfg, first, cs.nextDisc)
		}
		done := make(chan struct{})
		cs.writing = done
		win := cs.win
		s.wg.Add(1)
		s.mu.Unlock()
		release := func() {
			s.mu.Lock()
			if cs.writing == done {
				cs.writing = nil
			}
			s.mu.Unlock()
			close(done)
			s.wg.Done()
		}
		return win, release, nil
	}
}

// expireLater drops win after d unless the channel moved on meanwhile.
func (s *Segmenter) expireLater(channel string, win *window, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.channels[channel]
	if cs == nil || cs.win != win {
		return
	}
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.timer = time.AfterFunc(d, func() { s.expire(channel, win) })
}

// expire drops win if the channel still serves it and no writer took it up.
func (s *Segmenter) expire(channel string, win *window) {
	s.mu.Lock()
	cs := s.channels[channel]
	if cs == nil || cs.win != win || cs.writing != nil {
		s.mu.Unlock()
		return
	}
	cs.advance(win)
	cs.win, cs.timer = nil, nil
	s.mu.Unlock()
	win.close()
}

// seqFloor is a lower bound for the first media sequence number of a new
// window that grows by ten per second of wall-clock time: segments are at
// least 100 ms long, so a window's numbers never grow faster, and a window
// started after a restart never goes below one from before it.
func seqFloor(now time.Time) uint64 {
	const epoch = 1_700_000_000 // 2023-11-14; keeps the numbers readable
	sec := now.Unix() - epoch
	if sec < 0 {
		return 0
	}
	return uint64(sec) * 10
}

// Remove drops a channel's HLS at once (a takedown): every path of the channel
// answers 404 from now on, also while its broadcast is still being fed.
func (s *Segmenter) Remove(channel string) {
	win := s.drop(channel)
	if win == nil {
		return
	}
	s.log.Info("channel HLS removed", "channel", channel)
	var paths []string
	if s.opts.OnRemove != nil {
		paths = s.paths(channel, win)
	}
	win.close()
	if s.opts.OnRemove != nil {
		s.opts.OnRemove(channel, paths)
	}
}

// drop stops serving the channel's window and returns it, not yet closed
// (nil if there was none).
func (s *Segmenter) drop(channel string) *window {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.channels[channel]
	if cs == nil || cs.win == nil {
		return nil
	}
	win := cs.win
	cs.advance(win)
	cs.win = nil
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
	return win
}

// paths returns the URL path of every HLS object win lists or hints at
// (playlists without a query first): what a CDN edge may hold of it.
func (s *Segmenter) paths(channel string, win *window) []string {
	names := win.names(&s.cfg)
	for i, n := range names {
		names[i] = "/hls/" + channel + "/" + n
	}
	return names
}

// lookup returns the window a channel currently serves, or nil.
func (s *Segmenter) lookup(channel string) *window {
	if s.opts.Visible != nil && !s.opts.Visible(channel) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs := s.channels[channel]; cs != nil {
		return cs.win
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
	var wins []*window
	for _, cs := range s.channels {
		if cs.win != nil {
			wins = append(wins, cs.win)
			cs.win = nil
		}
		if cs.timer != nil {
			cs.timer.Stop()
		}
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	for _, w := range wins {
		w.close()
	}
}

// randomToken returns 8 random characters from [a-z0-9].
func randomToken() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
