package segmenter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/onairhq/onair/ingest"
)

// stream is one broadcast's HLS: a gohlslib muxer while live, then a frozen
// copy of its final playlists and media while it lingers after the end.
type stream struct {
	seg   *Segmenter
	b     *ingest.Broadcast
	log   *slog.Logger
	mux   *gohlslib.Muxer
	video *gohlslib.Track
	audio *gohlslib.Track

	msnBase  uint64 // added to gohlslib's media sequence numbers
	discSeq  uint64 // EXT-X-DISCONTINUITY-SEQUENCE of this broadcast
	lowLat   bool
	mpegts   bool
	audioOnl bool

	w         writer     // touched by the Consume goroutine only
	wmu       sync.Mutex // serialises writes with closing the muxer
	muxClosed bool       // guarded by wmu

	fetches fetchGroup     // collapses concurrent reads of one object
	wg      sync.WaitGroup // goroutines calling into the muxer

	mu          sync.Mutex
	closed      bool
	ended       bool
	endedCh     chan struct{}      // closed when the final playlists are ready
	final       map[string]*object // after the end: every object still served
	target      int                // pinned EXT-X-TARGETDURATION, 0 until first served
	partTarget  time.Duration      // pinned PART-TARGET, 0 until first served
	maxKeyGap   time.Duration      // longest keyframe interval seen
	shortGap    bool               // a keyframe interval shorter than SegmentDuration was seen
	created     map[string]time.Time
	warnedTD    bool
	linger      *time.Timer
	closedCh    chan struct{}
	closeOnce   sync.Once
	lastModTime time.Time
}

// writer is the muxing side of a stream: it turns access units into gohlslib
// writes and remembers what it needs to flush the last segment at the end.
type writer struct {
	started bool // first video keyframe (or first audio frame, audio-only) written
	dts     *h264.DTSExtractor
	dts265  *h265.DTSExtractor
	frames  int  // video frames since the extractor started
	warned  bool // DTS disagreement logged once per broadcast

	// gohlslib cuts a segment at a keyframe whose bitstream-derived DTS is at
	// least SegmentDuration after the segment's start; these mirror that, in
	// 90 kHz ticks of the same DTS, so the end can close the last segment.
	segStart  int64
	lastDTS   int64
	lastPTS   int64 // highest PTS written
	frameDur  int64
	haveKey   bool
	lastKeyTs time.Duration // RTMP DTS of the last keyframe, for keyframe intervals
	lastKey   [][]byte      // last keyframe, re-sent at the end to close the segment

	audioNext     int64 // next AAC timestamp in samples, once started
	audioSegStart int64 // audio-only: where gohlslib's current segment starts
	audioSegOK    bool
	audioOK       bool
	lastAudio     []byte
	audioPerAU    int64
}

func newStream(s *Segmenter, b *ingest.Broadcast, log *slog.Logger, msnBase, discSeq uint64) (*stream, error) {
	st := &stream{
		seg:      s,
		b:        b,
		log:      log,
		msnBase:  msnBase,
		discSeq:  discSeq,
		lowLat:   s.opts.Variant == VariantLowLatency,
		mpegts:   s.opts.Variant == VariantMPEGTS,
		endedCh:  make(chan struct{}),
		closedCh: make(chan struct{}),
		created:  make(map[string]time.Time),
	}
	st.w.audioPerAU = mpeg4audio.SamplesPerAccessUnit
	var tracks []*gohlslib.Track
	if v := b.Tracks.Video; v != nil {
		t := &gohlslib.Track{ClockRate: 90000}
		switch v.Codec {
		case ingest.CodecH264:
			t.Codec = &codecs.H264{SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecHEVC:
			t.Codec = &codecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecAV1:
			// The sequence header travels in-band with keyframes; gohlslib picks it
			// up before it writes the init segment.
			t.Codec = &codecs.AV1{}
		default:
			return nil, fmt.Errorf("video codec %q is not supported by HLS", v.Codec)
		}
		st.video = t
		tracks = append(tracks, t)
	}
	if a := b.Tracks.Audio; a != nil {
		t := &gohlslib.Track{}
		switch a.Codec {
		case ingest.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if err := conf.Unmarshal(a.Config); err != nil {
				return nil, fmt.Errorf("parsing AAC AudioSpecificConfig: %w", err)
			}
			t.Codec = &codecs.MPEG4Audio{Config: conf}
			t.ClockRate = conf.SampleRate
			if conf.FrameLengthFlag {
				st.w.audioPerAU = 960
			}
		case ingest.CodecOpus:
			ch := a.Channels
			if ch == 0 {
				ch = 2
			}
			t.Codec = &codecs.Opus{ChannelCount: ch}
			t.ClockRate = 48000
		default:
			return nil, fmt.Errorf("audio codec %q is not supported by HLS", a.Codec)
		}
		st.audio = t
		tracks = append(tracks, t)
	}
	if len(tracks) == 0 {
		return nil, errors.New("broadcast has no tracks")
	}
	st.audioOnl = st.video == nil
	variant := gohlslib.MuxerVariantLowLatency
	switch s.opts.Variant {
	case VariantFMP4:
		variant = gohlslib.MuxerVariantFMP4
	case VariantMPEGTS:
		variant = gohlslib.MuxerVariantMPEGTS
	}
	st.mux = &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            variant,
		SegmentCount:       s.opts.SegmentCount,
		SegmentMinDuration: s.minSegment(),
		PartMinDuration:    s.opts.PartDuration,
		OnEncodeError: func(err error) {
			s.metrics.encodeWarnings.Add(1)
			log.Warn("HLS muxer warning", "err", err)
		},
	}
	if err := st.mux.Start(); err != nil {
		return nil, err
	}
	return st, nil
}

// run writes the feed into the muxer until the feed ends, ctx is done or the
// muxer refuses a unit. After a removal it keeps reading but writes nothing.
func (st *stream) run(ctx context.Context, feed *ingest.Feed) error {
	for {
		au, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		st.wmu.Lock()
		if !st.muxClosed {
			err = st.write(au)
		}
		st.wmu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (st *stream) write(au ingest.AccessUnit) error {
	switch au.Kind {
	case ingest.KindVideo:
		if st.video == nil {
			return nil
		}
		st.seg.metrics.videoUnits.Add(1)
		return st.writeVideo(au)
	case ingest.KindAudio:
		if st.audio == nil {
			return nil
		}
		st.seg.metrics.audioUnits.Add(1)
		return st.writeAudio(au)
	}
	return nil
}

func ticks(d time.Duration, rate int) int64 {
	return int64(d) * int64(rate) / int64(time.Second)
}

func (st *stream) ntp(pts time.Duration) time.Time { return st.b.Started.Add(pts) }

func (st *stream) writeVideo(au ingest.AccessUnit) error {
	w := &st.w
	if len(au.NALUs) == 0 {
		return nil
	}
	if !w.started {
		if !au.Key {
			return nil // gohlslib drops these too; a player could not decode them
		}
		w.started = true
	}
	if st.b.Tracks.Video.Codec == ingest.CodecH264 && !hasH264Slice(au.NALUs) {
		return nil // gohlslib skips these (e.g. SEI only) without deriving a DTS
	}
	nalus := st.withParameterSets(au)
	pts := ticks(au.PTS, 90000)

	dts, err := st.checkDTS(au, nalus, pts)
	if err != nil {
		return err
	}
	minSeg := ticks(st.seg.minSegment(), 90000)
	if au.Key {
		if w.haveKey {
			gap := au.DTS - w.lastKeyTs
			st.mu.Lock()
			st.maxKeyGap = max(st.maxKeyGap, gap)
			if gap < st.seg.minSegment() {
				st.shortGap = true
			}
			st.mu.Unlock()
		}
		if !w.haveKey || dts-w.segStart >= minSeg {
			w.segStart = dts
		}
		w.haveKey, w.lastKeyTs, w.lastKey = true, au.DTS, nalus
	}
	if w.frames > 1 && dts > w.lastDTS {
		w.frameDur = dts - w.lastDTS
	}
	w.lastDTS = dts
	w.lastPTS = max(w.lastPTS, pts)

	if err := st.writeVideoMux(pts, nalus); err != nil {
		return fmt.Errorf("muxing video frame at DTS %v: %w", au.DTS, err)
	}
	return nil
}

func (st *stream) writeVideoMux(pts int64, nalus [][]byte) error {
	ntp := st.b.Started.Add(time.Duration(pts) * time.Second / 90000)
	switch st.video.Codec.(type) {
	case *codecs.H264:
		return st.mux.WriteH264(st.video, ntp, pts, nalus)
	case *codecs.H265:
		return st.mux.WriteH265(st.video, ntp, pts, nalus)
	case *codecs.AV1:
		return st.mux.WriteAV1(st.video, ntp, pts, nalus)
	}
	return nil
}

func hasH264Slice(nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) > 0 {
			if t := h264.NALUType(n[0] & 0x1f); t == h264.NALUTypeIDR || t == h264.NALUTypeNonIDR {
				return true
			}
		}
	}
	return false
}

// withParameterSets prepends the track's parameter sets to a keyframe that
// lacks them: RTMP carries them only in the sequence header, but gohlslib's
// DTS extractor and in-band decoders need them in the stream.
func (st *stream) withParameterSets(au ingest.AccessUnit) [][]byte {
	v := st.b.Tracks.Video
	if !au.Key || v.Codec == ingest.CodecAV1 {
		return au.NALUs
	}
	hasSPS := false
	for _, n := range au.NALUs {
		if len(n) == 0 {
			continue
		}
		switch v.Codec {
		case ingest.CodecH264:
			hasSPS = hasSPS || h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS
		case ingest.CodecHEVC:
			hasSPS = hasSPS || h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT
		}
	}
	if hasSPS {
		return au.NALUs
	}
	out := make([][]byte, 0, len(au.NALUs)+3)
	for _, ps := range [][]byte{v.VPS, v.SPS, v.PPS} {
		if len(ps) > 0 {
			out = append(out, ps)
		}
	}
	return append(out, au.NALUs...)
}

// dtsTolerance is how far the bitstream-derived DTS may stray from RTMP's:
// RTMP timestamps are whole milliseconds, the extractor interpolates.
const dtsTolerance = 90 // 1 ms at 90 kHz

// dtsWarmup is how many frames the extractor needs before it has learned the
// stream's reorder depth: until then it places DTS later than RTMP does (the
// first keyframe at its PTS), always monotonic and never past the PTS.
const dtsWarmup = 16

// checkDTS runs the same DTS extractor gohlslib runs inside WriteH264/H265,
// on the same input, and compares its answer with RTMP's DTS. gohlslib writes
// each sample's composition offset as PTS minus this DTS, so presentation
// times come out exact either way; a disagreement past the warm-up only moves
// decode times and is logged and counted. An extractor error is returned:
// gohlslib would refuse the same frame.
func (st *stream) checkDTS(au ingest.AccessUnit, nalus [][]byte, pts int64) (int64, error) {
	w := &st.w
	var dts int64
	var err error
	switch st.b.Tracks.Video.Codec {
	case ingest.CodecH264:
		if w.dts == nil {
			w.dts = &h264.DTSExtractor{}
			w.dts.Initialize()
		}
		dts, err = w.dts.Extract(nalus, pts)
	case ingest.CodecHEVC:
		if w.dts265 == nil {
			w.dts265 = &h265.DTSExtractor{}
			w.dts265.Initialize()
		}
		dts, err = w.dts265.Extract(nalus, pts)
	default:
		return pts, nil // AV1 has no reordering
	}
	if err != nil {
		return 0, fmt.Errorf("deriving DTS from the bitstream at RTMP DTS %v: %w", au.DTS, err)
	}
	w.frames++
	if diff := dts - ticks(au.DTS, 90000); w.frames > dtsWarmup && abs(diff) > dtsTolerance {
		st.seg.metrics.dtsMismatch.Add(1)
		if !w.warned {
			w.warned = true
			st.log.Warn("bitstream DTS disagrees with RTMP DTS; presentation times stay exact",
				"rtmp_dts", au.DTS, "diff_ms", float64(diff)/90)
		}
	}
	return dts, nil
}

// simulateDTS returns the DTS the extractor would give a frame, without
// changing its state.
func (st *stream) simulateDTS(nalus [][]byte, pts int64) (int64, error) {
	switch {
	case st.w.dts != nil:
		cp := *st.w.dts
		return cp.Extract(nalus, pts)
	case st.w.dts265 != nil:
		cp := *st.w.dts265
		return cp.Extract(nalus, pts)
	}
	return pts, nil
}

func (st *stream) writeAudio(au ingest.AccessUnit) error {
	w := &st.w
	if len(au.Frame) == 0 {
		return nil
	}
	if st.video != nil && !w.started {
		return nil // audio before the first keyframe would start the stream with no picture
	}
	w.started = true
	rate := st.audio.ClockRate
	var err error
	switch st.audio.Codec.(type) {
	case *codecs.MPEG4Audio:
		// RTMP rounds timestamps to milliseconds; AAC frames are a fixed number of
		// samples, so count samples and resync only on a real jump (a lost frame).
		pts := ticks(au.PTS, rate)
		if !w.audioOK || abs(pts-w.audioNext) > w.audioPerAU/2 {
			w.audioNext, w.audioOK = pts, true
		}
		if st.video == nil && (!w.audioSegOK || w.audioNext-w.audioSegStart >= ticks(st.seg.minSegment(), rate)) {
			w.audioSegStart, w.audioSegOK = w.audioNext, true // mirrors gohlslib's cut rule
		}
		err = st.mux.WriteMPEG4Audio(st.audio, st.ntp(au.PTS), w.audioNext, [][]byte{au.Frame})
		w.audioNext += w.audioPerAU
	case *codecs.Opus:
		err = st.mux.WriteOpus(st.audio, st.ntp(au.PTS), ticks(au.PTS, rate), [][]byte{au.Frame})
	}
	if err != nil {
		return fmt.Errorf("muxing audio frame at PTS %v: %w", au.PTS, err)
	}
	w.lastAudio = au.Frame
	return nil
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// flush makes gohlslib close the segment in progress, which it only does when
// the next segment starts: for video it re-sends the last keyframe one frame
// after the last frame (later if the tail is shorter than the minimum segment
// length, which holds the last picture a little longer), for audio-only one
// more copy of the last frame. That extra frame opens a segment that is never
// published.
func (st *stream) flush() {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.muxClosed {
		return
	}
	if err := st.flushInner(); err != nil {
		st.log.Debug("could not flush the last segment", "err", err)
	}
}

func (st *stream) flushInner() error {
	w := &st.w
	if !w.started {
		return nil
	}
	if st.video == nil {
		if _, ok := st.audio.Codec.(*codecs.MPEG4Audio); !ok || w.lastAudio == nil {
			return nil
		}
		minLen := ticks(st.seg.minSegment(), st.audio.ClockRate)
		pts := max(w.audioNext, w.audioSegStart+minLen)
		return st.mux.WriteMPEG4Audio(st.audio, st.ntp(0), pts, [][]byte{w.lastAudio})
	}
	if !w.haveKey {
		return nil
	}
	fd := w.frameDur
	if fd <= 0 {
		fd = 3000 // 30 fps
	}
	want := max(w.lastDTS+fd, w.segStart+ticks(st.seg.minSegment(), 90000))
	// The extractor decides the keyframe's DTS from its PTS; find a PTS that
	// lands it at or past want (the frame itself is never published).
	pts := max(want, w.lastPTS+fd)
	for range 32 {
		dts, err := st.simulateDTS(w.lastKey, pts)
		if err != nil {
			return err
		}
		if dts >= want {
			break
		}
		pts += 2*(want-dts) + 1
	}
	return st.writeVideoMux(pts, w.lastKey)
}
