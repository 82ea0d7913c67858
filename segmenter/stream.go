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
	started  bool // first video keyframe (or first audio frame, audio-only) written
	dts      *h264.DTSExtractor
	dts265   *h265.DTSExtractor
	dtsOff   int64 // extracted DTS minus RTMP DTS, in 90 kHz ticks, once known
	dtsOffOK bool
	mismatch bool // logged once per broadcast

	segStart   time.Duration // DTS where gohlslib's current segment starts (mirrors its rule)
	lastKeyDTS time.Duration
	haveKey    bool
	lastVideo  ingest.AccessUnit // last keyframe, re-sent at the end to close the segment
	lastVDTS   time.Duration
	lastVPTS   time.Duration // highest PTS written
	frameDur   time.Duration

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
		SegmentMinDuration: s.opts.SegmentDuration,
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
		w.segStart = au.DTS
	}
	nalus := st.withParameterSets(au)
	pts := ticks(au.PTS, 90000)

	if err := st.checkDTS(au, nalus, pts); err != nil {
		return err
	}

	if au.Key {
		gap := au.DTS - w.lastKeyDTS
		if w.haveKey {
			st.mu.Lock()
			st.maxKeyGap = max(st.maxKeyGap, gap)
			if gap < st.seg.opts.SegmentDuration {
				st.shortGap = true
			}
			st.mu.Unlock()
		}
		if w.haveKey && au.DTS-w.segStart >= st.seg.opts.SegmentDuration {
			w.segStart = au.DTS
		}
		w.haveKey, w.lastKeyDTS = true, au.DTS
		w.lastVideo = au
		w.lastVideo.NALUs = nalus
	}
	if w.lastVDTS != 0 && au.DTS > w.lastVDTS {
		w.frameDur = au.DTS - w.lastVDTS
	}
	w.lastVDTS = au.DTS
	w.lastVPTS = max(w.lastVPTS, au.PTS)

	var err error
	switch st.video.Codec.(type) {
	case *codecs.H264:
		err = st.mux.WriteH264(st.video, st.ntp(au.PTS), pts, nalus)
	case *codecs.H265:
		err = st.mux.WriteH265(st.video, st.ntp(au.PTS), pts, nalus)
	case *codecs.AV1:
		err = st.mux.WriteAV1(st.video, st.ntp(au.PTS), pts, nalus)
	}
	if err != nil {
		return fmt.Errorf("muxing video frame at DTS %v: %w", au.DTS, err)
	}
	return nil
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

// checkDTS runs the same DTS extractor gohlslib runs inside WriteH264/H265
// beside it and compares its answer with RTMP's DTS. They must differ by a
// constant: then gohlslib's decode timeline is RTMP's, shifted, and since it
// writes each sample's presentation offset as PTS minus its own DTS, every
// PTS comes out exact. An extractor error is returned: gohlslib would refuse
// the same frame.
func (st *stream) checkDTS(au ingest.AccessUnit, nalus [][]byte, pts int64) error {
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
		return nil
	}
	if err != nil {
		return fmt.Errorf("deriving DTS from the bitstream at RTMP DTS %v: %w", au.DTS, err)
	}
	off := dts - ticks(au.DTS, 90000)
	if !w.dtsOffOK {
		w.dtsOff, w.dtsOffOK = off, true
		return nil
	}
	if off != w.dtsOff {
		st.seg.metrics.dtsMismatch.Add(1)
		if !w.mismatch {
			w.mismatch = true
			st.log.Warn("bitstream DTS disagrees with RTMP DTS; presentation times stay exact",
				"rtmp_dts", au.DTS, "offset_ticks", w.dtsOff, "now_ticks", off)
		}
	}
	return nil
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
		if st.video == nil && (!w.audioSegOK || w.audioNext-w.audioSegStart >= ticks(st.seg.opts.SegmentDuration, rate)) {
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
		minLen := ticks(st.seg.opts.SegmentDuration, st.audio.ClockRate)
		pts := max(w.audioNext, w.audioSegStart+minLen)
		return st.mux.WriteMPEG4Audio(st.audio, st.ntp(0), pts, [][]byte{w.lastAudio})
	}
	if !w.haveKey {
		return nil
	}
	fd := w.frameDur
	if fd <= 0 {
		fd = 33 * time.Millisecond
	}
	dts := max(w.lastVDTS+fd, w.segStart+st.seg.opts.SegmentDuration)
	pts := max(dts, w.lastVPTS+fd) // past every PTS so far
	au := ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, DTS: dts, PTS: pts, NALUs: w.lastVideo.NALUs}
	if err := st.checkDTS(au, au.NALUs, ticks(pts, 90000)); err != nil {
		return err
	}
	switch st.video.Codec.(type) {
	case *codecs.H264:
		return st.mux.WriteH264(st.video, st.ntp(pts), ticks(pts, 90000), au.NALUs)
	case *codecs.H265:
		return st.mux.WriteH265(st.video, st.ntp(pts), ticks(pts, 90000), au.NALUs)
	case *codecs.AV1:
		return st.mux.WriteAV1(st.video, st.ntp(pts), ticks(pts, 90000), au.NALUs)
	}
	return nil
}
