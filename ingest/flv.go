package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
)

// This file parses the bodies of RTMP audio and video messages (FLV tag bodies,
// including Enhanced RTMP v1/v2 extended headers) into codec-neutral pieces.
// Everything here works on untrusted bytes: it never panics and bounds what it keeps.

// Limits on what a single tag may carry.
const (
	maxParamSets     = 16 // per kind in a decoder configuration record
	maxNALUsPerFrame = 4096
)

// TagType says what a parsed tag carries.
type TagType uint8

// Tag types.
const (
	TagSequenceHeader TagType = iota + 1 // decoder configuration
	TagFrame                             // one coded frame
	TagSequenceEnd                       // end of sequence; carries nothing
	TagIgnored                           // metadata, video info/command frames: nothing to forward
)

// ErrTruncated reports a tag shorter than its header says.
var ErrTruncated = errors.New("tag truncated")

// UnsupportedCodecError reports a codec onair does not carry.
type UnsupportedCodecError struct {
	Kind Kind
	Name string // human-readable codec name, e.g. "Speex" or "VP6"
}

func (e *UnsupportedCodecError) Error() string {
	k := "video"
	if e.Kind == KindAudio {
		k = "audio"
	}
	return fmt.Sprintf("unsupported %s codec %s", k, e.Name)
}

// VideoTag is a parsed RTMP video message.
type VideoTag struct {
	Type  TagType
	Codec Codec
	// Key is the FLV frame type "keyframe" flag.
	Key bool
	// CTS is the composition time offset in milliseconds (PTS - DTS); may be negative.
	CTS int32
	// Config is set for TagSequenceHeader.
	Config *VideoTrack
	// LengthSize is the NALU length-prefix size from the decoder configuration (sequence headers).
	LengthSize int
	// Payload is the coded frame for TagFrame: length-prefixed NALUs (H.264/HEVC)
	// or a low-overhead OBU stream (AV1). It aliases the input.
	Payload []byte
}

// AudioTag is a parsed RTMP audio message.
type AudioTag struct {
	Type   TagType
	Codec  Codec
	Config *AudioTrack // set for TagSequenceHeader
	// Payload is one raw frame for TagFrame. It aliases the input.
	Payload []byte
}

// FLV legacy video codec IDs (low nibble of the first byte).
var flvVideoCodecNames = map[byte]string{
	1: "JPEG", 2: "Sorenson H.263", 3: "Screen Video", 4: "VP6", 5: "VP6 with alpha",
	6: "Screen Video v2", 7: "H.264", 12: "HEVC",
}

// FLV sound formats (high nibble of the first byte).
var flvAudioCodecNames = map[byte]string{
	0: "Linear PCM (platform endian)", 1: "ADPCM", 2: "MP3", 3: "Linear PCM (little endian)",
	4: "Nellymoser 16 kHz", 5: "Nellymoser 8 kHz", 6: "Nellymoser", 7: "G.711 A-law",
	8: "G.711 mu-law", 10: "AAC", 11: "Speex", 14: "MP3 8 kHz", 15: "device-specific sound",
}

// Enhanced RTMP packet types (low nibble when the ExHeader bit is set).
const (
	exSequenceStart     = 0
	exCodedFrames       = 1
	exSequenceEnd       = 2
	exCodedFramesX      = 3
	exMetadata          = 4
	exMPEG2TSSeqStart   = 5
	exMultitrack        = 6
	exModEx             = 7
	exAudioMultichannel = 4 // audio: MultichannelConfig
)

// ParseVideoTag parses the body of an RTMP video message.
func ParseVideoTag(b []byte) (VideoTag, error) {
	if len(b) < 1 {
		return VideoTag{}, ErrTruncated
	}
	if b[0]&0x80 != 0 {
		return parseExVideoTag(b)
	}
	frameType := b[0] >> 4
	codecID := b[0] & 0x0f
	if frameType == 5 {
		// Video info/command frame: carries no picture.
		return VideoTag{Type: TagIgnored}, nil
	}
	var codec Codec
	switch codecID {
	case 7:
		codec = CodecH264
	case 12:
		// Pre-standard "HEVC in FLV" (codec ID 12), laid out exactly like AVC.
		codec = CodecHEVC
	default:
		name, ok := flvVideoCodecNames[codecID]
		if !ok {
			name = fmt.Sprintf("FLV codec id %d", codecID)
		}
		return VideoTag{}, &UnsupportedCodecError{Kind: KindVideo, Name: name}
	}
	if len(b) < 5 {
		return VideoTag{}, ErrTruncated
	}
	t := VideoTag{Codec: codec, Key: frameType == 1, CTS: si24(b[2:5])}
	body := b[5:]
	switch b[1] {
	case 0:
		return videoSequenceHeader(t, body)
	case 1:
		t.Type = TagFrame
		t.Payload = body
		return t, nil
	case 2:
		t.Type = TagSequenceEnd
		return t, nil
	default:
		return VideoTag{}, fmt.Errorf("unknown AVC packet type %d", b[1])
	}
}

func parseExVideoTag(b []byte) (VideoTag, error) {
	frameType := (b[0] >> 4) & 0x07
	pktType := b[0] & 0x0f
	switch pktType {
	case exMultitrack, exModEx, exMPEG2TSSeqStart:
		return VideoTag{}, &UnsupportedCodecError{Kind: KindVideo, Name: fmt.Sprintf("Enhanced RTMP packet type %d", pktType)}
	}
	if frameType == 5 && pktType != exMetadata {
		return VideoTag{Type: TagIgnored}, nil
	}
	if len(b) < 5 {
		return VideoTag{}, ErrTruncated
	}
	fourCC := string(b[1:5])
	t := VideoTag{Key: frameType == 1}
	switch fourCC {
	case "avc1":
		t.Codec = CodecH264
	case "hvc1":
		t.Codec = CodecHEVC
	case "av01":
		t.Codec = CodecAV1
	default:
		return VideoTag{}, &UnsupportedCodecError{Kind: KindVideo, Name: fmt.Sprintf("%q", fourCC)}
	}
	body := b[5:]
	switch pktType {
	case exSequenceStart:
		return videoSequenceHeader(t, body)
	case exCodedFrames:
		t.Type = TagFrame
		if t.Codec != CodecAV1 {
			// Only AVC and HEVC carry a composition time offset here.
			if len(body) < 3 {
				return VideoTag{}, ErrTruncated
			}
			t.CTS = si24(body[:3])
			body = body[3:]
		}
		t.Payload = body
		return t, nil
	case exCodedFramesX:
		t.Type = TagFrame
		t.Payload = body
		return t, nil
	case exSequenceEnd:
		t.Type = TagSequenceEnd
		return t, nil
	case exMetadata:
		return VideoTag{Type: TagIgnored, Codec: t.Codec}, nil
	default:
		return VideoTag{}, fmt.Errorf("unknown Enhanced RTMP video packet type %d", pktType)
	}
}

func videoSequenceHeader(t VideoTag, body []byte) (VideoTag, error) {
	t.Type = TagSequenceHeader
	t.CTS = 0
	var err error
	switch t.Codec {
	case CodecH264:
		t.Config, t.LengthSize, err = parseAVCConfig(body)
		if err != nil {
			return VideoTag{}, fmt.Errorf("parse AVC sequence header: %w", err)
		}
	case CodecHEVC:
		t.Config, t.LengthSize, err = parseHEVCConfig(body)
		if err != nil {
			return VideoTag{}, fmt.Errorf("parse HEVC sequence header: %w", err)
		}
	case CodecAV1:
		t.Config, err = parseAV1Config(body)
		if err != nil {
			return VideoTag{}, fmt.Errorf("parse AV1 sequence header: %w", err)
		}
	}
	return t, nil
}

// parseAVCConfig reads an AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1).
func parseAVCConfig(b []byte) (*VideoTrack, int, error) {
	if len(b) < 7 {
		return nil, 0, ErrTruncated
	}
	if b[0] != 1 {
		return nil, 0, fmt.Errorf("configuration version %d", b[0])
	}
	lengthSize := int(b[4]&0x03) + 1
	if lengthSize == 3 {
		return nil, 0, errors.New("NALU length size 3 is not allowed")
	}
	r := reader{b: b[5:]}
	numSPS := int(r.u8() & 0x1f)
	var sps, pps []byte
	for i := 0; i < numSPS; i++ {
		ps := r.bytes16()
		if sps == nil && len(ps) > 0 {
			sps = ps
		}
	}
	numPPS := int(r.u8())
	for i := 0; i < numPPS; i++ {
		ps := r.bytes16()
		if pps == nil && len(ps) > 0 {
			pps = ps
		}
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	if sps == nil || pps == nil {
		return nil, 0, errors.New("no SPS or PPS")
	}
	var s h264.SPS
	if err := safely(func() error { return s.Unmarshal(sps) }); err != nil {
		return nil, 0, fmt.Errorf("parse SPS: %w", err)
	}
	v := &VideoTrack{Codec: CodecH264, SPS: clone(sps), PPS: clone(pps)}
	_ = safely(func() error { v.Width, v.Height = s.Width(), s.Height(); return nil })
	return v, lengthSize, nil
}

// parseHEVCConfig reads an HEVCDecoderConfigurationRecord (ISO 14496-15 8.3.3.1).
func parseHEVCConfig(b []byte) (*VideoTrack, int, error) {
	const fixed = 22
	if len(b) < fixed+1 {
		return nil, 0, ErrTruncated
	}
	lengthSize := int(b[21]&0x03) + 1
	if lengthSize == 3 {
		return nil, 0, errors.New("NALU length size 3 is not allowed")
	}
	r := reader{b: b[fixed:]}
	numArrays := int(r.u8())
	var vps, sps, pps []byte
	for i := 0; i < numArrays && r.err == nil; i++ {
		typ := r.u8() & 0x3f
		n := int(r.u16())
		if n > maxParamSets {
			return nil, 0, fmt.Errorf("%d parameter sets of type %d", n, typ)
		}
		for j := 0; j < n; j++ {
			ps := r.bytes16()
			if len(ps) == 0 {
				continue
			}
			switch h265.NALUType(typ) {
			case h265.NALUType_VPS_NUT:
				if vps == nil {
					vps = ps
				}
			case h265.NALUType_SPS_NUT:
				if sps == nil {
					sps = ps
				}
			case h265.NALUType_PPS_NUT:
				if pps == nil {
					pps = ps
				}
			}
		}
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	if vps == nil || sps == nil || pps == nil {
		return nil, 0, errors.New("missing VPS, SPS or PPS")
	}
	var s h265.SPS
	if err := safely(func() error { return s.Unmarshal(sps) }); err != nil {
		return nil, 0, fmt.Errorf("parse SPS: %w", err)
	}
	v := &VideoTrack{Codec: CodecHEVC, VPS: clone(vps), SPS: clone(sps), PPS: clone(pps)}
	_ = safely(func() error { v.Width, v.Height = s.Width(), s.Height(); return nil })
	return v, lengthSize, nil
}

// parseAV1Config reads an AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3.3). The
// sequence header OBU is kept in VideoTrack.SPS.
func parseAV1Config(b []byte) (*VideoTrack, error) {
	if len(b) < 4 {
		return nil, ErrTruncated
	}
	if b[0] != 0x81 {
		return nil, fmt.Errorf("bad marker/version byte 0x%02x", b[0])
	}
	if len(b) == 4 {
		return nil, errors.New("no sequence header OBU")
	}
	var bs av1.Bitstream
	if err := safely(func() error { return bs.Unmarshal(b[4:]) }); err != nil {
		return nil, fmt.Errorf("split config OBUs: %w", err)
	}
	for _, obu := range bs {
		if len(obu) == 0 || av1.OBUType((obu[0]>>3)&0x0f) != av1.OBUTypeSequenceHeader {
			continue
		}
		var sh av1.SequenceHeader
		if err := safely(func() error { return sh.Unmarshal(obu) }); err != nil {
			return nil, fmt.Errorf("parse sequence header: %w", err)
		}
		v := &VideoTrack{Codec: CodecAV1, SPS: clone(obu)}
		_ = safely(func() error { v.Width, v.Height = sh.Width(), sh.Height(); return nil })
		return v, nil
	}
	return nil, errors.New("no sequence header OBU")
}

// SplitNALUs splits a frame of NALUs, each preceded by a big-endian length of
// lengthSize bytes (1, 2 or 4). Empty NALUs are skipped. The result aliases payload.
func SplitNALUs(payload []byte, lengthSize int) ([][]byte, error) {
	if lengthSize != 1 && lengthSize != 2 && lengthSize != 4 {
		return nil, fmt.Errorf("NALU length size %d", lengthSize)
	}
	var nalus [][]byte
	for len(payload) > 0 {
		if len(payload) < lengthSize {
			return nil, fmt.Errorf("NALU length: %w", ErrTruncated)
		}
		var n uint64
		for _, c := range payload[:lengthSize] {
			n = n<<8 | uint64(c)
		}
		payload = payload[lengthSize:]
		if n > uint64(len(payload)) {
			return nil, fmt.Errorf("NALU of %d bytes with %d left: %w", n, len(payload), ErrTruncated)
		}
		if n > 0 {
			if len(nalus) == maxNALUsPerFrame {
				return nil, fmt.Errorf("more than %d NALUs in a frame", maxNALUsPerFrame)
			}
			nalus = append(nalus, payload[:n:n])
		}
		payload = payload[n:]
	}
	return nalus, nil
}

// SplitOBUs splits an AV1 low-overhead bitstream into OBUs (with their size fields removed),
// dropping temporal delimiters.
func SplitOBUs(payload []byte) ([][]byte, error) {
	var bs av1.Bitstream
	if err := safely(func() error { return bs.Unmarshal(payload) }); err != nil {
		return nil, fmt.Errorf("split OBUs: %w", err)
	}
	out := bs[:0]
	for _, obu := range bs {
		if len(obu) > 0 && av1.OBUType((obu[0]>>3)&0x0f) == av1.OBUTypeTemporalDelimiter {
			continue
		}
		out = append(out, obu)
	}
	if len(out) > maxNALUsPerFrame {
		return nil, fmt.Errorf("more than %d OBUs in a frame", maxNALUsPerFrame)
	}
	return out, nil
}

// IsKeyFrame reports whether nalus hold a random-access picture (H.264 IDR, HEVC IRAP).
func IsKeyFrame(codec Codec, nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch codec {
		case CodecH264:
			if h264.NALUType(n[0]&0x1f) == h264.NALUTypeIDR {
				return true
			}
		case CodecHEVC:
			t := h265.NALUType((n[0] >> 1) & 0x3f)
			if t >= h265.NALUType_BLA_W_LP && t <= h265.NALUType_CRA_NUT {
				return true
			}
		}
	}
	return false
}

// ParseAudioTag parses the body of an RTMP audio message.
func ParseAudioTag(b []byte) (AudioTag, error) {
	if len(b) < 1 {
		return AudioTag{}, ErrTruncated
	}
	format := b[0] >> 4
	if format == 9 {
		return parseExAudioTag(b)
	}
	if format != 10 {
		name, ok := flvAudioCodecNames[format]
		if !ok {
			name = fmt.Sprintf("FLV sound format %d", format)
		}
		return AudioTag{}, &UnsupportedCodecError{Kind: KindAudio, Name: name}
	}
	if len(b) < 2 {
		return AudioTag{}, ErrTruncated
	}
	switch b[1] {
	case 0:
		return aacSequenceHeader(b[2:])
	case 1:
		return AudioTag{Type: TagFrame, Codec: CodecAAC, Payload: b[2:]}, nil
	default:
		return AudioTag{}, fmt.Errorf("unknown AAC packet type %d", b[1])
	}
}

func parseExAudioTag(b []byte) (AudioTag, error) {
	pktType := b[0] & 0x0f
	switch pktType {
	case exMultitrack, exModEx:
		return AudioTag{}, &UnsupportedCodecError{Kind: KindAudio, Name: fmt.Sprintf("Enhanced RTMP packet type %d", pktType)}
	}
	if len(b) < 5 {
		return AudioTag{}, ErrTruncated
	}
	fourCC := string(b[1:5])
	var codec Codec
	switch fourCC {
	case "mp4a":
		codec = CodecAAC
	case "Opus":
		codec = CodecOpus
	default:
		return AudioTag{}, &UnsupportedCodecError{Kind: KindAudio, Name: fmt.Sprintf("%q", fourCC)}
	}
	body := b[5:]
	switch pktType {
	case exSequenceStart:
		if codec == CodecAAC {
			return aacSequenceHeader(body)
		}
		var h opus.IDHeader
		if err := safely(func() error { return h.Unmarshal(body) }); err != nil {
			return AudioTag{}, fmt.Errorf("parse Opus ID header: %w", err)
		}
		return AudioTag{Type: TagSequenceHeader, Codec: CodecOpus, Config: &AudioTrack{
			Codec: CodecOpus, Config: clone(body), SampleRate: 48000, Channels: int(h.ChannelCount),
		}}, nil
	case exCodedFrames:
		return AudioTag{Type: TagFrame, Codec: codec, Payload: body}, nil
	case exSequenceEnd:
		return AudioTag{Type: TagSequenceEnd, Codec: codec}, nil
	case exAudioMultichannel:
		// Channel layout is also in the codec configuration; nothing to forward.
		return AudioTag{Type: TagIgnored, Codec: codec}, nil
	default:
		return AudioTag{}, fmt.Errorf("unknown Enhanced RTMP audio packet type %d", pktType)
	}
}

func aacSequenceHeader(asc []byte) (AudioTag, error) {
	var c mpeg4audio.AudioSpecificConfig
	if err := safely(func() error { return c.Unmarshal(asc) }); err != nil {
		return AudioTag{}, fmt.Errorf("parse AAC AudioSpecificConfig: %w", err)
	}
	ch := int(c.ChannelConfig)
	if ch == 7 {
		ch = 8
	}
	return AudioTag{Type: TagSequenceHeader, Codec: CodecAAC, Config: &AudioTrack{
		Codec: CodecAAC, Config: clone(asc), SampleRate: c.SampleRate, Channels: ch,
	}}, nil
}

// si24 reads a big-endian signed 24-bit integer.
func si24(b []byte) int32 {
	v := int32(b[0])<<16 | int32(b[1])<<8 | int32(b[2])
	return v << 8 >> 8 // sign-extend
}

// reader reads big-endian fields and remembers the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u8() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if r.err != nil || len(r.b) < 2 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes16() []byte {
	n := int(r.u16())
	if r.err != nil || len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrTruncated
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// safely runs a third-party parser and turns a panic into an error: the bytes
// come from the network, and one bad publisher must not take the server down.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser panic: %v", r)
		}
	}()
	return f()
}
