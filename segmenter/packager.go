package segmenter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	hcodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/onairhq/onair/ingest"
)

// encoder turns one part's samples into bytes: an fMP4 fragment, or MPEG-TS
// packets. Samples come in decode order with their durations set.
type encoder interface {
	encode(video, audio []sample, segmentStart bool) ([]byte, error)
}

// packager writes one broadcast into its channel's window. It cuts parts and
// segments as frames arrive, encodes each part once, and publishes it as soon
// as the frame after it arrives (the frame that tells its duration).
//
// Cutting, in media time of the lead track (video, or audio when there is none):
//   - a new segment at a keyframe at least minSegment into the segment;
//   - a new segment between keyframes when waiting for one would take the
//     segment past the target duration (rounded), or when the keyframe
//     interval is known to be too long for it: the target never changes;
//   - a new part when the part reached 85 % of PART-TARGET, or the next frame
//     would take it past PART-TARGET however soon it comes;
//   - a new segment at the first keyframe of a publisher that returned
//     within the grace period (a discontinuity in the recording only);
//   - a discontinuity when timestamps jump forward by more than the target,
//     or at a keyframe after a gap its part cannot hold.
type packager struct {
	cfg *config
	m   *metrics
	w   *window
	b   *ingest.Broadcast
	log *slog.Logger
	enc encoder
	r   *rendition

	video     *ingest.VideoTrack
	audio     *ingest.AudioTrack
	audioRate int64
	aacFrame  int64 // samples per AAC frame; 0 when audio is timed by RTMP (Opus)

	started    bool
	seg        *segment
	segStart   time.Duration // lead-track media time where seg starts
	partStart  time.Duration
	partIndep  bool
	segStarted bool     // the part being filled is its segment's first
	vs         []sample // video samples of the part being filled
	as         []sample // audio samples not in a part yet
	lastLead   time.Duration
	durs       [8]time.Duration // recent lead frame durations
	ndur       int
	lastKey    time.Duration
	gop        time.Duration // last keyframe interval
	audioNext  int64         // AAC: next frame's time in samples
	audioSync  bool
	anchor     time.Time // wall clock at anchorPTS
	anchorPTS  time.Duration
	anchored   bool
	warnedGOP  bool
	recv       time.Time // when the frame being handled was received
	record     func(*ingest.Broadcast, []byte) Sink
	sink       Sink // the recording's; nil if not recorded
	disc       bool // the broadcast's first segment follows another one's
	ending     bool // closing the broadcast's last part

	partTarget time.Duration // PART-TARGET: fitted to the frames until the window fixes it
	minPart    time.Duration // 85 % of partTarget (rfc8216bis)
	fixed      bool          // partTarget is the window's and no longer changes
}

func newPackager(cfg *config, m *metrics, w *window, b *ingest.Broadcast, log *slog.Logger) (*packager, error) {
	p := &packager{cfg: cfg, m: m, w: w, b: b, log: log, video: b.Tracks.Video, audio: b.Tracks.Audio}
	if p.video == nil && p.audio == nil {
		return nil, fmt.Errorf("broadcast has no tracks")
	}
	if v := p.video; v != nil {
		switch v.Codec {
		case ingest.CodecH264, ingest.CodecHEVC:
		case ingest.CodecAV1:
			if cfg.mpegts {
				return nil, fmt.Errorf("video codec %s cannot go into MPEG-TS (use the lowlatency or fmp4 variant)", v.Codec)
			}
		default:
			return nil, fmt.Errorf("video codec %q is not supported by HLS", v.Codec)
		}
	}
	if a := p.audio; a != nil {
		_, rate, err := audioCodec(a)
		if err != nil {
			return nil, err
		}
		p.audioRate = int64(rate)
		if a.Codec == ingest.CodecAAC {
			var conf mpeg4audio.AudioSpecificConfig
			_ = conf.Unmarshal(a.Config) // checked by audioCodec
			p.aacFrame = mpeg4audio.SamplesPerAccessUnit
			if conf.FrameLengthFlag {
				p.aacFrame = 960
			}
		}
	}
	w.mu.Lock()
	p.disc = len(w.segs) > 0
	p.setPartTarget(cfg.partTarget)
	if w.partTarget > 0 {
		// A returning publisher, or the next broadcast after a codec change:
		// PART-TARGET never changes within a playlist.
		p.setPartTarget(w.partTarget)
		p.fixed = true
	}
	w.mu.Unlock()
	if cfg.mpegts {
		enc, err := newTSEncoder(b.Tracks, p.audioRate)
		if err != nil {
			return nil, err
		}
		p.enc = enc
	} else {
		p.enc = &fmp4Encoder{}
	}
	return p, nil
}

// run packages the feed until it ends (the *ingest.EndError is returned),
// ctx is done, or a frame cannot be packaged.
func (p *packager) run(ctx context.Context, feed *ingest.Feed) error {
	for {
		au, err := feed.Next(ctx)
		if err != nil {
			return err
		}
		switch au.Kind {
		case ingest.KindVideo:
			if p.video != nil {
				p.m.videoUnits.Add(1)
				err = p.writeVideo(au)
			}
		case ingest.KindAudio:
			if p.audio != nil {
				p.m.audioUnits.Add(1)
				err = p.writeAudio(au)
			}
		}
		if err != nil {
			return err
		}
	}
}

func ticks(d time.Duration, rate int64) int64 {
	return int64(d) * rate / int64(time.Second)
}

func fromTicks(t, rate int64) time.Duration {
	return time.Duration(t * int64(time.Second) / rate)
}

func (p *packager) writeVideo(au ingest.AccessUnit) error {
	if len(au.NALUs) == 0 {
		return nil
	}
	if p.video.Codec == ingest.CodecH264 && !hasH264Slice(au.NALUs) {
		return nil // SEI or parameter sets alone: not a frame
	}
	if !p.started {
		if !au.Key {
			return nil // undecodable without the keyframe before it
		}
		if err := p.start(au); err != nil {
			return err
		}
	}
	s := sample{
		dts:    ticks(au.DTS, videoClock),
		ptsOff: int32(ticks(au.PTS, videoClock) - ticks(au.DTS, videoClock)),
		sync:   au.Key,
		nalus:  au.NALUs,
	}
	if p.video.Codec == ingest.CodecAV1 {
		frame, err := av1Sample(au.NALUs)
		if err != nil {
			return fmt.Errorf("AV1 frame at %v: %w", au.DTS, err)
		}
		s.nalus, s.frame = nil, frame
	}
	if au.Key {
		if p.ndur > 0 {
			p.gop = au.DTS - p.lastKey
		}
		p.lastKey = au.DTS
	}
	p.recv = au.Received
	if n := len(p.vs); n > 0 {
		p.advance(au.DTS, au.Key, &p.vs[n-1], au)
	}
	if len(p.vs) == 0 {
		p.partIndep = au.Key
	}
	p.vs = append(p.vs, s)
	p.lastLead = au.DTS
	return nil
}

// advance is called when the lead track's next frame (at t) arrives: it sets
// the previous frame's duration and closes the part, and the segment, when
// the frame at t must start a new one.
func (p *packager) advance(t time.Duration, key bool, prev *sample, au ingest.AccessUnit) {
	rate := int64(videoClock)
	if p.video == nil {
		rate = p.audioRate
	}
	gap := t - p.lastLead
	if !p.fixed && gap >= 0 && gap <= p.cfg.maxGap {
		p.fitPartTarget(t-p.partStart, len(p.vs))
	}
	// A gap the previous frame cannot fill without taking its part past
	// PART-TARGET (a publisher that reconnected, or stalled).
	over := t-p.partStart > p.partTarget
	if gap > p.cfg.maxGap || gap < 0 || over && key {
		// A jump in the publisher's clock: end the segment where its media
		// ends and go on after a discontinuity.
		end := p.lastFrameEnd()
		prev.dur = uint32(ticks(end, rate) - ticks(p.lastLead, rate))
		p.m.discontinuities.Add(1)
		p.closePart(end, p.newSegment(au, true), t)
		return
	}
	if over {
		// Between keyframes a discontinuity would restart decoders on a frame
		// that needs the ones before it: end the part within its target and
		// leave a hole until t, which players step over.
		end := p.lastFrameEnd()
		prev.dur = uint32(ticks(end, rate) - ticks(p.lastLead, rate))
		p.closePart(end, nil, t)
		return
	}
	prev.dur = uint32(ticks(t, rate) - ticks(p.lastLead, rate))
	p.durs[p.ndur%len(p.durs)] = gap
	p.ndur++
	est := p.estimate()
	segLen, partLen := t-p.segStart, t-p.partStart
	limit := p.cfg.target + time.Second/2 // EXTINF rounds to at most the target below this
	// A keyframe interval too long for the target: split each GOP into equal
	// segments of about SegmentDuration, the first starting at the keyframe.
	long := p.gop > 0 && p.gop+est >= limit
	var sub time.Duration
	crossed := false
	if long {
		n := (p.gop + p.cfg.segment - 1) / p.cfg.segment
		sub = p.gop / n
		k := (t - p.lastKey + est/2) / sub
		crossed = k >= 1 && k > (p.lastLead-p.lastKey+est/2)/sub && segLen >= sub/2
	}
	switch {
	case key && (au.Discontinuity || segLen >= p.cfg.minSegment || long && segLen >= sub/2):
		p.closePart(t, p.newSegment(au, false), t)
	case !key && (segLen+est >= limit || crossed):
		p.m.forcedCuts.Add(1)
		if !p.warnedGOP {
			p.warnedGOP = true
			interval := p.gop
			if interval == 0 {
				interval = segLen // no second keyframe yet
			}
			p.log.Warn("keyframe interval is longer than the segment target: cutting segments between keyframes; set the encoder's keyframe interval to 1 s (OBS: Output → Keyframe Interval)",
				"keyframe_interval_at_least", interval.Round(time.Millisecond), "target", p.cfg.target)
		}
		p.closePart(t, p.newSegment(au, false), t)
	case partLen >= p.minPart || partLen+p.shortest() > p.partTarget:
		p.closePart(t, nil, t)
	}
}

// fitPartTarget sets PART-TARGET until the first part fixes it; frames is
// how many lead-track frames span covers. The configured one stays where
// whole frames fill at least 85 % of it (at 15, 25, 30, 50 and 60 fps, and
// AAC audio). Otherwise it is the whole number of frames nearest
// PartDuration, plus the millisecond RTMP's timestamps can add: at 24 fps
// five frames (209 ms), where 201 ms holds four (167 ms, under 85 %).
func (p *packager) fitPartTarget(span time.Duration, frames int) {
	if frames == 0 || span <= 0 {
		return
	}
	frame := span / time.Duration(frames)
	if p.cfg.partTarget/frame*frame >= p.cfg.partTarget*85/100 {
		p.setPartTarget(p.cfg.partTarget)
		return
	}
	n := max(1, (p.cfg.part+frame/2)/frame)
	d := (n*span/time.Duration(frames) + time.Millisecond - 1).Truncate(time.Millisecond)
	p.setPartTarget(d + time.Millisecond)
}

func (p *packager) setPartTarget(d time.Duration) {
	p.partTarget = d
	p.minPart = d * 85 / 100
}

// lastFrameEnd is where the newest frame ends when no frame follows it (at
// the end of a broadcast, or before a jump): it lasts as long as the one
// before it, within the part target.
func (p *packager) lastFrameEnd() time.Duration {
	d := p.estimate()
	if p.ndur > 0 {
		d = p.durs[(p.ndur-1)%len(p.durs)]
	}
	return min(p.lastLead+d, max(p.partStart+p.partTarget-time.Millisecond, p.lastLead+time.Millisecond))
}

// shortest is the shortest recent frame duration (estimate until one is
// known). A part under 85 % of PART-TARGET is closed only when even a frame
// this short would take it past PART-TARGET: with frames a millisecond apart
// in length (RTMP rounding), the longest would close five 30 fps frames
// (168 ms) where the sixth comes within the target.
func (p *packager) shortest() time.Duration {
	n := min(p.ndur, len(p.durs))
	if n == 0 {
		return p.estimate()
	}
	d := p.durs[0]
	for i := 1; i < n; i++ {
		d = min(d, p.durs[i])
	}
	return d
}

// estimate is the longest recent frame duration (30 fps until one is known).
func (p *packager) estimate() time.Duration {
	var d time.Duration
	for i := 0; i < min(p.ndur, len(p.durs)); i++ {
		d = max(d, p.durs[i])
	}
	if d == 0 {
		if p.video == nil && p.audioRate > 0 && p.aacFrame > 0 {
			return fromTicks(p.aacFrame, p.audioRate)
		}
		return time.Second / 30
	}
	return d
}

func (p *packager) writeAudio(au ingest.AccessUnit) error {
	if len(au.Frame) == 0 {
		return nil
	}
	if p.video != nil && !p.started {
		return nil // audio before the first keyframe would start the stream with no picture
	}
	var dts int64
	if p.aacFrame > 0 {
		// RTMP rounds timestamps to milliseconds; AAC frames are a fixed number
		// of samples, so count samples and resync only on a real jump.
		pts := ticks(au.PTS, p.audioRate)
		if !p.audioSync || abs(pts-p.audioNext) > p.aacFrame/2 {
			p.audioNext, p.audioSync = pts, true
		}
		dts = p.audioNext
		p.audioNext += p.aacFrame
	} else {
		dts = ticks(au.PTS, p.audioRate)
	}
	s := sample{dts: dts, sync: true, frame: au.Frame, dur: uint32(p.aacFrame)}
	p.recv = au.Received
	if p.video != nil {
		p.as = append(p.as, s)
		return nil
	}
	// Audio only: audio leads.
	t := fromTicks(dts, p.audioRate)
	if !p.started {
		if err := p.start(au); err != nil {
			return err
		}
		p.segStart, p.partStart = t, t
	} else if n := len(p.as); n > 0 {
		p.advanceAudio(t, &p.as[n-1], au)
	}
	p.as = append(p.as, s)
	p.lastLead = t
	return nil
}

// advanceAudio is advance for audio-only broadcasts: every frame may start a
// segment, which is cut once it is about SegmentDuration long.
func (p *packager) advanceAudio(t time.Duration, prev *sample, au ingest.AccessUnit) {
	gap := t - p.lastLead
	if !p.fixed && gap >= 0 && gap <= p.cfg.maxGap {
		p.fitPartTarget(t-p.partStart, len(p.as))
	}
	if gap > p.cfg.maxGap || gap < 0 || t-p.partStart > p.partTarget {
		p.advance(t, true, prev, au) // the discontinuity path
		return
	}
	if p.aacFrame == 0 {
		prev.dur = uint32(ticks(t, p.audioRate) - prev.dts)
	}
	p.durs[p.ndur%len(p.durs)] = gap
	p.ndur++
	est := p.estimate()
	segLen, partLen := t-p.segStart, t-p.partStart
	switch {
	case au.Discontinuity || segLen+est/2 >= p.cfg.segment:
		p.closePart(t, p.newSegment(au, false), t)
	case partLen >= p.minPart || partLen+p.shortest() > p.partTarget:
		p.closePart(t, nil, t)
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
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

// start opens the broadcast's first segment at its first keyframe (or audio frame).
func (p *packager) start(au ingest.AccessUnit) error {
	var seqHeader []byte
	if p.video != nil && p.video.Codec == ingest.CodecAV1 {
		seqHeader = av1SequenceHeader(au.NALUs)
	}
	r := &rendition{token: randomToken(), created: time.Now(), audioOnly: p.video == nil}
	if !p.cfg.mpegts {
		init, err := initSegment(p.b.Tracks, seqHeader)
		if err != nil {
			return err
		}
		r.init = init
		if p.record != nil {
			p.sink = p.record(p.b, init)
		}
	}
	r.codecs = codecsOf(p.b.Tracks, seqHeader)
	if v := p.video; v != nil {
		r.width, r.height = v.Width, v.Height
	}
	p.r = r
	p.started = true
	p.segStart, p.partStart = au.DTS, au.DTS
	p.partIndep, p.segStarted = true, true
	p.seg = &segment{r: r, disc: p.disc, pdt: p.wallClock(au)}
	p.w.open(p.seg)
	return nil
}

// newSegment makes the segment that the frame au starts.
func (p *packager) newSegment(au ingest.AccessUnit, disc bool) *segment {
	return &segment{r: p.r, disc: disc, resumed: au.Discontinuity, pdt: p.wallClock(au)}
}

// wallClock maps a frame's presentation time to the wall clock for
// EXT-X-PROGRAM-DATE-TIME: when onair received it, shifted by its
// composition offset. The mapping is kept steady and only re-anchored when
// frames arrive more than a second later than the media clock says (a
// publisher that stalled, or reconnected within the grace period).
func (p *packager) wallClock(au ingest.AccessUnit) time.Time {
	recv := au.Received
	if recv.IsZero() {
		recv = time.Now()
	}
	arrival := recv.Add(au.PTS - au.DTS)
	if p.anchored {
		// Only forward: media arriving faster than real time (a burst after
		// a stall) must not make the clock in the playlist go back.
		if predicted := p.anchor.Add(au.PTS - p.anchorPTS); arrival.Sub(predicted) < time.Second {
			return predicted
		}
	}
	p.anchor, p.anchorPTS, p.anchored = arrival, au.PTS, true
	return arrival
}

// closePart encodes the part being filled, which ends at media time end, and
// publishes it; next, if set, is the segment the following part starts. The
// part after it starts at media time from.
func (p *packager) closePart(end time.Duration, next *segment, from time.Duration) {
	audio := p.as
	if p.video != nil && !p.ending {
		n := 0
		for n < len(p.as) && fromTicks(p.as[n].dts, p.audioRate) < end {
			n++
		}
		audio = p.as[:n]
	}
	p.setAudioDurations(audio)
	if len(p.vs) > 0 || len(audio) > 0 {
		data, err := p.enc.encode(p.vs, audio, p.segStarted)
		if err != nil {
			p.m.encodeErrors.Add(1)
			p.log.Warn("part dropped: cannot encode it", "err", err)
		} else {
			pt := &part{data: data, dur: end - p.partStart, independent: p.partIndep, created: time.Now()}
			if !p.fixed {
				p.setPartTarget(p.w.fixPartTarget(p.partTarget))
				p.fixed = true
			}
			p.w.addPart(p.seg, pt, next)
			if p.sink != nil {
				p.sink.Part(data, pt.dur, p.segStarted, next != nil || p.ending, p.seg.disc || p.seg.resumed, p.seg.pdt)
			}
			p.m.parts.Add(1)
			p.m.partBytes.Add(uint64(len(data)))
			if !p.recv.IsZero() {
				p.m.partDelay.observe(time.Since(p.recv))
			}
		}
	}
	if next != nil {
		p.m.segments.Add(1) // the one this part closed
		p.seg = next
		p.segStart = from
	}
	// Forget the frames now copied into the part.
	clear(p.vs)
	p.vs = p.vs[:0]
	k := copy(p.as, p.as[len(audio):])
	clear(p.as[k:])
	p.as = p.as[:k]
	p.partStart = from
	p.segStarted = next != nil
	p.partIndep = p.video == nil // set again by the next video frame
}

// setAudioDurations sets the duration of audio samples timed by RTMP: the gap
// to the next one, and for the last the one before it.
func (p *packager) setAudioDurations(audio []sample) {
	if p.aacFrame > 0 {
		return
	}
	for i := range audio {
		switch {
		case i+1 < len(p.as):
			audio[i].dur = uint32(max(p.as[i+1].dts-audio[i].dts, 0))
		case i > 0:
			audio[i].dur = audio[i-1].dur
		default:
			audio[i].dur = uint32(p.audioRate / 50) // 20 ms, Opus's usual frame
		}
	}
}

// finish closes the last part and segment; with end set the playlist ends,
// otherwise it waits for the channel's next broadcast to continue it.
func (p *packager) finish(end bool) {
	if p.started {
		rate := int64(videoClock)
		if p.video == nil {
			rate = p.audioRate
		}
		var last *sample
		if p.video != nil && len(p.vs) > 0 {
			last = &p.vs[len(p.vs)-1]
		} else if p.video == nil && len(p.as) > 0 {
			last = &p.as[len(p.as)-1]
		}
		if last != nil {
			stop := p.lastFrameEnd()
			if last.dur == 0 {
				last.dur = uint32(ticks(stop, rate) - ticks(p.lastLead, rate))
			}
			p.ending = true // the last part takes the audio that outlasts the video
			p.closePart(stop, nil, stop)
		}
		p.m.segments.Add(1) // the last one
		p.w.finish(end)
		return
	}
	if end {
		p.w.finish(true)
	}
}

// codecsOf is the CODECS attribute of the multivariant playlist.
func codecsOf(t ingest.Tracks, av1SeqHeader []byte) string {
	var out []string
	if v := t.Video; v != nil {
		var c hcodecs.Codec
		switch v.Codec {
		case ingest.CodecH264:
			c = &hcodecs.H264{SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecHEVC:
			c = &hcodecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecAV1:
			c = &hcodecs.AV1{SequenceHeader: av1SeqHeader}
		}
		if s := codecparams.Marshal(c); s != "" {
			out = append(out, s)
		}
	}
	if a := t.Audio; a != nil {
		switch a.Codec {
		case ingest.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if conf.Unmarshal(a.Config) == nil {
				out = append(out, codecparams.Marshal(&hcodecs.MPEG4Audio{Config: conf}))
			}
		case ingest.CodecOpus:
			out = append(out, "opus")
		}
	}
	return strings.Join(out, ",")
}

// fmp4Encoder writes parts as fMP4 fragments.
type fmp4Encoder struct {
	seq  uint32
	runs [2]trackRun
}

func (e *fmp4Encoder) encode(video, audio []sample, _ bool) ([]byte, error) {
	e.seq++
	runs := e.runs[:0]
	if len(video) > 0 {
		runs = append(runs, trackRun{id: videoTrackID, samples: video})
	}
	if len(audio) > 0 {
		runs = append(runs, trackRun{id: audioTrackID, samples: audio})
	}
	return marshalFragment(e.seq, runs), nil
}
