package segmenter

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/onairhq/onair/ingest"
)

// Track IDs inside onair's fMP4: video first, then audio.
const (
	videoTrackID = 1
	audioTrackID = 2
)

// videoClock is the timescale of video tracks (and of MPEG-TS timestamps).
const videoClock = 90000

// sample is one coded frame waiting to go into a part, in its track's timescale.
type sample struct {
	dts    int64    // decode time
	ptsOff int32    // presentation time minus decode time
	dur    uint32   // decode duration; set when the next sample's time is known
	sync   bool     // a random-access point
	nalus  [][]byte // video: NAL units (or AV1 OBUs), written length-prefixed
	frame  []byte   // audio: one raw frame
}

// payloadSize is the sample's size inside mdat.
func (s *sample) payloadSize() int {
	if s.nalus == nil {
		return len(s.frame)
	}
	n := 0
	for _, u := range s.nalus {
		n += 4 + len(u)
	}
	return n
}

// trackRun is one track's samples in one fragment.
type trackRun struct {
	id      uint32
	samples []sample
}

// Sizes of the fixed boxes of a fragment (see marshalFragment).
const (
	boxHeader  = 8
	mfhdSize   = boxHeader + 4 + 4
	tfhdSize   = boxHeader + 4 + 4
	tfdtSize   = boxHeader + 4 + 8
	trunFixed  = boxHeader + 4 + 4 + 4 // version/flags, sample count, data offset
	trunFlagDO = 0x000001              // data-offset-present
	trunFlagD  = 0x000100              // sample-duration-present
	trunFlagS  = 0x000200              // sample-size-present
	trunFlagF  = 0x000400              // sample-flags-present
	trunFlagC  = 0x000800              // sample-composition-time-offsets-present
	nonSync    = 1 << 16               // sample_is_non_sync_sample
	tfhdBase   = 0x020000              // default-base-is-moof
)

func (r *trackRun) trunFlags() uint32 {
	f := uint32(trunFlagDO | trunFlagD | trunFlagS)
	for i := range r.samples {
		if !r.samples[i].sync {
			f |= trunFlagF
		}
		if r.samples[i].ptsOff != 0 {
			f |= trunFlagC
		}
	}
	return f
}

func entrySize(flags uint32) int {
	n := 8
	if flags&trunFlagF != 0 {
		n += 4
	}
	if flags&trunFlagC != 0 {
		n += 4
	}
	return n
}

// marshalFragment writes one fMP4 fragment (moof + mdat) holding runs, with
// every sample's bytes copied once into a buffer of the exact size. The box
// layout is the one mediacommon's fmp4.Part.Marshal writes (tests hold the
// two byte for byte), written by hand because this runs for every part of
// every stream: no reflection, one allocation.
func marshalFragment(seq uint32, runs []trackRun) []byte {
	moof := boxHeader + mfhdSize
	flags := make([]uint32, len(runs))
	data := 0
	for i := range runs {
		flags[i] = runs[i].trunFlags()
		moof += boxHeader + tfhdSize + tfdtSize + trunFixed + len(runs[i].samples)*entrySize(flags[i])
		for j := range runs[i].samples {
			data += runs[i].samples[j].payloadSize()
		}
	}
	b := make([]byte, 0, moof+boxHeader+data)
	b = box(b, moof, "moof")
	b = box(b, mfhdSize, "mfhd")
	b = binary.BigEndian.AppendUint32(b, 0) // version, flags
	b = binary.BigEndian.AppendUint32(b, seq)
	dataOff := moof + boxHeader
	for i := range runs {
		r := &runs[i]
		es := entrySize(flags[i])
		trun := trunFixed + len(r.samples)*es
		b = box(b, boxHeader+tfhdSize+tfdtSize+trun, "traf")
		b = box(b, tfhdSize, "tfhd")
		b = binary.BigEndian.AppendUint32(b, tfhdBase)
		b = binary.BigEndian.AppendUint32(b, r.id)
		b = box(b, tfdtSize, "tfdt")
		b = binary.BigEndian.AppendUint32(b, 1<<24) // version 1: 64-bit time
		base := int64(0)
		if len(r.samples) > 0 {
			base = r.samples[0].dts
		}
		b = binary.BigEndian.AppendUint64(b, uint64(max(base, 0)))
		b = box(b, trun, "trun")
		b = binary.BigEndian.AppendUint32(b, 1<<24|flags[i]) // version 1: signed offsets
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.samples)))
		b = binary.BigEndian.AppendUint32(b, uint32(dataOff))
		for j := range r.samples {
			s := &r.samples[j]
			size := s.payloadSize()
			b = binary.BigEndian.AppendUint32(b, s.dur)
			b = binary.BigEndian.AppendUint32(b, uint32(size))
			if flags[i]&trunFlagF != 0 {
				sf := uint32(0)
				if !s.sync {
					sf = nonSync
				}
				b = binary.BigEndian.AppendUint32(b, sf)
			}
			if flags[i]&trunFlagC != 0 {
				b = binary.BigEndian.AppendUint32(b, uint32(s.ptsOff))
			}
			dataOff += size
		}
	}
	b = box(b, boxHeader+data, "mdat")
	for i := range runs {
		for j := range runs[i].samples {
			s := &runs[i].samples[j]
			if s.nalus == nil {
				b = append(b, s.frame...)
				continue
			}
			for _, u := range s.nalus {
				b = binary.BigEndian.AppendUint32(b, uint32(len(u)))
				b = append(b, u...)
			}
		}
	}
	return b
}

func box(b []byte, size int, typ string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	return append(b, typ...)
}

// initSegment writes the fMP4 initialization segment for tracks. For AV1,
// seqHeader is the sequence header OBU taken from the first keyframe (RTMP
// carries it in-band).
func initSegment(tracks ingest.Tracks, seqHeader []byte) ([]byte, error) {
	var init fmp4.Init
	if v := tracks.Video; v != nil {
		var c codecs.Codec
		switch v.Codec {
		case ingest.CodecH264:
			c = &codecs.H264{SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecHEVC:
			c = &codecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
		case ingest.CodecAV1:
			if seqHeader == nil {
				return nil, errors.New("AV1 keyframe without a sequence header")
			}
			c = &codecs.AV1{SequenceHeader: seqHeader}
		default:
			return nil, fmt.Errorf("video codec %q cannot go into fMP4", v.Codec)
		}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: videoTrackID, TimeScale: videoClock, Codec: c})
	}
	if a := tracks.Audio; a != nil {
		c, rate, err := audioCodec(a)
		if err != nil {
			return nil, err
		}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: audioTrackID, TimeScale: uint32(rate), Codec: c})
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("write init segment: %w", err)
	}
	return buf.Bytes(), nil
}

// audioCodec describes an audio track for fMP4 and gives its timescale.
func audioCodec(a *ingest.AudioTrack) (codecs.Codec, int, error) {
	switch a.Codec {
	case ingest.CodecAAC:
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(a.Config); err != nil {
			return nil, 0, fmt.Errorf("parse AAC AudioSpecificConfig: %w", err)
		}
		if conf.SampleRate <= 0 {
			return nil, 0, errors.New("AAC config without a sample rate")
		}
		return &codecs.MPEG4Audio{Config: conf}, conf.SampleRate, nil
	case ingest.CodecOpus:
		ch := a.Channels
		if ch == 0 {
			ch = 2
		}
		return &codecs.Opus{ChannelCount: ch}, 48000, nil
	}
	return nil, 0, fmt.Errorf("audio codec %q cannot go into fMP4", a.Codec)
}

// av1SequenceHeader returns the sequence header OBU of a temporal unit, or nil.
func av1SequenceHeader(obus [][]byte) []byte {
	for _, o := range obus {
		if len(o) > 0 && (o[0]>>3)&0x0f == 1 {
			return o
		}
	}
	return nil
}

// av1Sample rewrites a temporal unit's OBUs as the low-overhead bitstream
// fMP4 carries (every OBU with its size field).
func av1Sample(obus [][]byte) ([]byte, error) {
	return av1.Bitstream(obus).Marshal()
}
