package segmenter

import (
	"bytes"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/onairhq/onair/ingest"
)

// tsOffset shifts MPEG-TS timestamps away from zero: the PCR runs ahead of
// the first DTS and a composition offset can make a PTS precede its DTS's
// neighbours.
const tsOffset = 10 * videoClock

// tsEncoder writes parts as MPEG-TS packets (the legacy "mpegts" variant,
// where parts are not listed and a segment is its parts in order).
type tsEncoder struct {
	buf       bytes.Buffer
	w         *mpegts.Writer
	video     *mpegts.Track
	audio     *mpegts.Track
	vt        *ingest.VideoTrack
	audioRate int64
	opus      bool
	items     []tsItem
}

// tsItem is a sample of either track, for writing both in decode order.
type tsItem struct {
	s     *sample
	video bool
	dts   int64 // 90 kHz
}

func newTSEncoder(t ingest.Tracks, audioRate int64) (*tsEncoder, error) {
	e := &tsEncoder{vt: t.Video, audioRate: audioRate}
	var tracks []*mpegts.Track
	if v := t.Video; v != nil {
		switch v.Codec {
		case ingest.CodecH264:
			e.video = &mpegts.Track{Codec: &tscodecs.H264{}}
		case ingest.CodecHEVC:
			e.video = &mpegts.Track{Codec: &tscodecs.H265{}}
		default:
			return nil, fmt.Errorf("video codec %s cannot go into MPEG-TS", v.Codec)
		}
		tracks = append(tracks, e.video)
	}
	if a := t.Audio; a != nil {
		switch a.Codec {
		case ingest.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if err := conf.Unmarshal(a.Config); err != nil {
				return nil, fmt.Errorf("parse AAC AudioSpecificConfig: %w", err)
			}
			e.audio = &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: conf}}
		case ingest.CodecOpus:
			ch := a.Channels
			if ch == 0 {
				ch = 2
			}
			e.audio = &mpegts.Track{Codec: &tscodecs.Opus{ChannelCount: ch}}
			e.opus = true
		default:
			return nil, fmt.Errorf("audio codec %s cannot go into MPEG-TS", a.Codec)
		}
		tracks = append(tracks, e.audio)
	}
	e.w = &mpegts.Writer{W: &e.buf, Tracks: tracks}
	if err := e.w.Initialize(); err != nil {
		return nil, fmt.Errorf("start MPEG-TS writer: %w", err)
	}
	return e, nil
}

func (e *tsEncoder) encode(video, audio []sample, segmentStart bool) ([]byte, error) {
	e.buf.Reset()
	if segmentStart && (len(video) == 0 || !video[0].sync) {
		// A segment cut between keyframes still needs its PAT and PMT; at a
		// keyframe the writer adds them itself.
		if _, err := e.w.WriteTables(); err != nil {
			return nil, err
		}
	}
	e.items = e.items[:0]
	for i := range video {
		e.items = append(e.items, tsItem{s: &video[i], video: true, dts: video[i].dts})
	}
	vi := len(e.items)
	for i := range audio {
		e.items = append(e.items, tsItem{s: &audio[i], dts: audio[i].dts * videoClock / e.audioRate})
	}
	// Merge the two runs (each already in decode order) by time.
	merged := mergeByDTS(e.items[:vi], e.items[vi:])
	for _, it := range merged {
		var err error
		if it.video {
			err = e.writeVideo(it.s)
		} else if e.opus {
			err = e.w.WriteOpus(e.audio, it.dts+tsOffset, [][]byte{it.s.frame})
		} else {
			err = e.w.WriteMPEG4Audio(e.audio, it.dts+tsOffset, [][]byte{it.s.frame})
		}
		if err != nil {
			return nil, err
		}
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

func (e *tsEncoder) writeVideo(s *sample) error {
	dts := s.dts + tsOffset
	pts := dts + int64(s.ptsOff)
	au := s.nalus
	if s.sync {
		au = withParameterSets(e.vt, au)
	}
	if e.vt.Codec == ingest.CodecHEVC {
		return e.w.WriteH265(e.video, pts, dts, au)
	}
	return e.w.WriteH264(e.video, pts, dts, au)
}

func mergeByDTS(a, b []tsItem) []tsItem {
	out := make([]tsItem, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].dts < a[0].dts {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// withParameterSets prepends the track's parameter sets to a keyframe that
// lacks them: RTMP carries them only in the sequence header, but MPEG-TS
// decoders need them in the stream.
func withParameterSets(v *ingest.VideoTrack, nalus [][]byte) [][]byte {
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch v.Codec {
		case ingest.CodecH264:
			if h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
				return nalus
			}
		case ingest.CodecHEVC:
			if h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT {
				return nalus
			}
		}
	}
	out := make([][]byte, 0, len(nalus)+3)
	for _, ps := range [][]byte{v.VPS, v.SPS, v.PPS} {
		if len(ps) > 0 {
			out = append(out, ps)
		}
	}
	return append(out, nalus...)
}
