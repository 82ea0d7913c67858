package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// A real 320x240 H.264 High profile SPS and its PPS (from libx264).
var (
	testSPS = []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60}
	testPPS = []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
	// A 1280x720 HEVC Main VPS/SPS/PPS (from libx265).
	testVPS     = []byte{0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09}
	testHEVCSPS = []byte{0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10}
	testHEVCPPS = []byte{0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40}
	testASC     = []byte{0x12, 0x10} // AAC-LC 44100 Hz stereo
)

func avcConfig(sps, pps []byte) []byte {
	b := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	return append(b, pps...)
}

func hevcConfig(vps, sps, pps []byte) []byte {
	b := make([]byte, 22)
	b[0] = 1
	b[21] = 0x0f // lengthSizeMinusOne = 3
	b = append(b, 3)
	for _, ps := range [][]byte{vps, sps, pps} {
		b = append(b, 0x80|(ps[0]>>1)&0x3f, 0, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(len(ps)))
		b = append(b, ps...)
	}
	return b
}

func lengthPrefixed(nalus ...[]byte) []byte {
	var b []byte
	for _, n := range nalus {
		b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
		b = append(b, n...)
	}
	return b
}

func legacyVideo(frameType, codec, pktType byte, cts int32, body []byte) []byte {
	b := []byte{frameType<<4 | codec, pktType, byte(cts >> 16), byte(cts >> 8), byte(cts)}
	return append(b, body...)
}

func exVideo(frameType, pktType byte, fourCC string, body []byte) []byte {
	b := append([]byte{0x80 | frameType<<4 | pktType}, fourCC...)
	return append(b, body...)
}

var (
	idr   = []byte{0x65, 0x88, 0x84, 0x00}
	slice = []byte{0x41, 0x9a, 0x02}
)

func TestParseVideoTag(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    VideoTag
		nalus   int
		key     bool
		wantErr bool
		codec   string // non-empty: expect UnsupportedCodecError naming it
	}{
		{name: "avc sequence header", in: legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS)),
			want: VideoTag{Type: TagSequenceHeader, Codec: CodecH264, Key: true, LengthSize: 4}},
		{name: "avc keyframe", in: legacyVideo(1, 7, 1, 0, lengthPrefixed(idr)),
			want: VideoTag{Type: TagFrame, Codec: CodecH264, Key: true}, nalus: 1, key: true},
		{name: "avc B-frame positive cts", in: legacyVideo(2, 7, 1, 66, lengthPrefixed(slice, slice)),
			want: VideoTag{Type: TagFrame, Codec: CodecH264, CTS: 66}, nalus: 2},
		{name: "avc negative cts", in: legacyVideo(2, 7, 1, -33, lengthPrefixed(slice)),
			want: VideoTag{Type: TagFrame, Codec: CodecH264, CTS: -33}, nalus: 1},
		{name: "avc end of sequence", in: legacyVideo(1, 7, 2, 0, nil), want: VideoTag{Type: TagSequenceEnd, Codec: CodecH264, Key: true}},
		{name: "video info frame", in: []byte{0x57, 0}, want: VideoTag{Type: TagIgnored}},
		{name: "hevc enhanced sequence start", in: exVideo(1, exSequenceStart, "hvc1", hevcConfig(testVPS, testHEVCSPS, testHEVCPPS)),
			want: VideoTag{Type: TagSequenceHeader, Codec: CodecHEVC, Key: true, LengthSize: 4}},
		{name: "hevc coded frames with cts", in: exVideo(1, exCodedFrames, "hvc1", append([]byte{0, 0, 40}, lengthPrefixed([]byte{0x26, 0x01, 0xaf})...)),
			want: VideoTag{Type: TagFrame, Codec: CodecHEVC, Key: true, CTS: 40}, nalus: 1, key: true},
		{name: "hevc coded frames X", in: exVideo(2, exCodedFramesX, "hvc1", lengthPrefixed([]byte{0x02, 0x01, 0xd0})),
			want: VideoTag{Type: TagFrame, Codec: CodecHEVC}, nalus: 1},
		{name: "enhanced avc1", in: exVideo(1, exCodedFrames, "avc1", append([]byte{0, 0, 0}, lengthPrefixed(idr)...)),
			want: VideoTag{Type: TagFrame, Codec: CodecH264, Key: true}, nalus: 1, key: true},
		{name: "enhanced metadata", in: exVideo(1, exMetadata, "hvc1", []byte{2, 0, 0}), want: VideoTag{Type: TagIgnored, Codec: CodecHEVC}},
		{name: "vp6 refused", in: []byte{0x14, 0, 0, 0}, codec: "VP6"},
		{name: "sorenson refused", in: []byte{0x12, 0}, codec: "Sorenson H.263"},
		{name: "vp09 refused", in: exVideo(1, exCodedFrames, "vp09", nil), codec: `"vp09"`},
		{name: "multitrack refused", in: []byte{0x80 | 0x10 | exMultitrack, 0, 'h', 'v', 'c', '1'}, codec: "Enhanced RTMP packet type 6"},
		{name: "empty", in: nil, wantErr: true},
		{name: "short avc header", in: []byte{0x17, 1, 0}, wantErr: true},
		{name: "short fourcc", in: []byte{0x91, 'h', 'v'}, wantErr: true},
		{name: "bad avc packet type", in: legacyVideo(1, 7, 9, 0, nil), wantErr: true},
		{name: "avc config truncated", in: legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS)[:12]), wantErr: true},
		{name: "avc config no pps", in: legacyVideo(1, 7, 0, 0, append(avcConfig(testSPS, testPPS)[:8+len(testSPS)], 0)), wantErr: true},
		{name: "hevc config truncated", in: exVideo(1, exSequenceStart, "hvc1", hevcConfig(testVPS, testHEVCSPS, testHEVCPPS)[:30]), wantErr: true},
		{name: "hevc coded frames missing cts", in: exVideo(1, exCodedFrames, "hvc1", []byte{0}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVideoTag(tt.in)
			if tt.codec != "" {
				var uc *UnsupportedCodecError
				if !errors.As(err, &uc) || uc.Name != tt.codec || uc.Kind != KindVideo {
					t.Fatalf("err = %v, want unsupported codec %s", err, tt.codec)
				}
				return
			}
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want.Type || got.Codec != tt.want.Codec || got.Key != tt.want.Key || got.CTS != tt.want.CTS ||
				(tt.want.LengthSize != 0 && got.LengthSize != tt.want.LengthSize) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if got.Type == TagFrame {
				nalus, err := SplitNALUs(got.Payload, 4)
				if err != nil || len(nalus) != tt.nalus {
					t.Fatalf("nalus %d err %v, want %d", len(nalus), err, tt.nalus)
				}
				if k := IsKeyFrame(got.Codec, nalus); k != tt.key {
					t.Fatalf("IsKeyFrame = %v", k)
				}
			}
		})
	}
}

func TestVideoConfigDimensions(t *testing.T) {
	v, err := ParseVideoTag(legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS)))
	if err != nil {
		t.Fatal(err)
	}
	if v.Config.Width != 320 || v.Config.Height != 240 || !bytes.Equal(v.Config.SPS, testSPS) || !bytes.Equal(v.Config.PPS, testPPS) {
		t.Fatalf("AVC config %+v", v.Config)
	}
	h, err := ParseVideoTag(exVideo(1, exSequenceStart, "hvc1", hevcConfig(testVPS, testHEVCSPS, testHEVCPPS)))
	if err != nil {
		t.Fatal(err)
	}
	if h.Config.Width != 1280 || h.Config.Height != 720 || !bytes.Equal(h.Config.VPS, testVPS) {
		t.Fatalf("HEVC config %dx%d", h.Config.Width, h.Config.Height)
	}
}

func TestSplitNALUs(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		size int
		want int
		err  bool
	}{
		{"one", lengthPrefixed(idr), 4, 1, false},
		{"empty nalu skipped", append(lengthPrefixed(idr), 0, 0, 0, 0), 4, 1, false},
		{"two-byte lengths", []byte{0, 2, 0x65, 0, 0, 1, 0x41}, 2, 2, false},
		{"length past end", []byte{0, 0, 0, 9, 1}, 4, 0, true},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 1}, 4, 0, true},
		{"partial prefix", []byte{0, 0}, 4, 0, true},
		{"bad size", []byte{1}, 3, 0, true},
		{"nothing", nil, 4, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitNALUs(tt.in, tt.size)
			if (err != nil) != tt.err || len(got) != tt.want {
				t.Fatalf("got %d nalus, err %v", len(got), err)
			}
		})
	}
}

func TestParseAudioTag(t *testing.T) {
	opusHead := []byte("OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00")
	tests := []struct {
		name   string
		in     []byte
		typ    TagType
		codec  Codec
		rate   int
		chans  int
		err    bool
		unsupp string
	}{
		{name: "aac sequence header", in: append([]byte{0xaf, 0}, testASC...), typ: TagSequenceHeader, codec: CodecAAC, rate: 44100, chans: 2},
		{name: "aac raw", in: []byte{0xaf, 1, 0x21, 0x10}, typ: TagFrame, codec: CodecAAC},
		{name: "enhanced opus start", in: append([]byte{0x90 | exSequenceStart, 'O', 'p', 'u', 's'}, opusHead...), typ: TagSequenceHeader, codec: CodecOpus, rate: 48000, chans: 2},
		{name: "enhanced opus frame", in: []byte{0x90 | exCodedFrames, 'O', 'p', 'u', 's', 0xfc}, typ: TagFrame, codec: CodecOpus},
		{name: "enhanced mp4a", in: append([]byte{0x90 | exSequenceStart, 'm', 'p', '4', 'a'}, testASC...), typ: TagSequenceHeader, codec: CodecAAC, rate: 44100, chans: 2},
		{name: "speex refused", in: []byte{0xb6, 0}, unsupp: "Speex"},
		{name: "mp3 refused", in: []byte{0x2f, 0}, unsupp: "MP3"},
		{name: "enhanced flac refused", in: []byte{0x90, 'f', 'L', 'a', 'C'}, unsupp: `"fLaC"`},
		{name: "empty", in: nil, err: true},
		{name: "aac missing packet type", in: []byte{0xaf}, err: true},
		{name: "aac bad config", in: []byte{0xaf, 0}, err: true},
		{name: "aac bad packet type", in: []byte{0xaf, 7}, err: true},
		{name: "opus bad head", in: []byte{0x90, 'O', 'p', 'u', 's', 'x'}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAudioTag(tt.in)
			if tt.unsupp != "" {
				var uc *UnsupportedCodecError
				if !errors.As(err, &uc) || uc.Name != tt.unsupp || uc.Kind != KindAudio {
					t.Fatalf("err = %v, want unsupported %s", err, tt.unsupp)
				}
				return
			}
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if tt.err {
				return
			}
			if got.Type != tt.typ || got.Codec != tt.codec {
				t.Fatalf("got %+v", got)
			}
			if tt.typ == TagSequenceHeader && (got.Config.SampleRate != tt.rate || got.Config.Channels != tt.chans) {
				t.Fatalf("config %+v", got.Config)
			}
		})
	}
}

func TestSI24(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want int32
	}{{[]byte{0, 0, 0}, 0}, {[]byte{0, 0, 0x42}, 66}, {[]byte{0xff, 0xff, 0xdf}, -33}, {[]byte{0x7f, 0xff, 0xff}, 8388607}, {[]byte{0x80, 0, 0}, -8388608}} {
		if got := si24(tt.in); got != tt.want {
			t.Errorf("si24(%x) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzParseVideoTag checks the video tag parser never panics and its output is bounded.
func FuzzParseVideoTag(f *testing.F) {
	f.Add(legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS)))
	f.Add(legacyVideo(1, 7, 1, 0, lengthPrefixed(idr)))
	f.Add(exVideo(1, exSequenceStart, "hvc1", hevcConfig(testVPS, testHEVCSPS, testHEVCPPS)))
	f.Add(exVideo(1, exCodedFrames, "hvc1", append([]byte{0, 0, 40}, lengthPrefixed([]byte{0x26, 0x01, 0xaf})...)))
	f.Add(exVideo(1, exSequenceStart, "av01", []byte{0x81, 0, 0, 0, 0x0a, 0x0b, 0, 0, 0, 0x42, 0xab, 0xbf, 0xc3, 0x71, 0xab, 0xe6, 0x01}))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVideoTag(b)
		if err != nil {
			return
		}
		if v.Type == TagSequenceHeader && v.Config == nil {
			t.Fatal("sequence header without config")
		}
		if v.Type == TagFrame {
			if v.Codec == CodecAV1 {
				_, _ = SplitOBUs(v.Payload)
				return
			}
			for _, size := range []int{1, 2, 4} {
				nalus, err := SplitNALUs(v.Payload, size)
				if err == nil {
					total := 0
					for _, n := range nalus {
						total += len(n)
					}
					if total > len(v.Payload) {
						t.Fatal("NALUs larger than payload")
					}
					IsKeyFrame(v.Codec, nalus)
				}
			}
		}
	})
}

// FuzzParseAudioTag checks the audio tag parser never panics.
func FuzzParseAudioTag(f *testing.F) {
	f.Add(append([]byte{0xaf, 0}, testASC...))
	f.Add([]byte{0xaf, 1, 0x21, 0x10})
	f.Add([]byte("\x90OpusOpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAudioTag(b)
		if err == nil && a.Type == TagSequenceHeader && a.Config == nil {
			t.Fatal("sequence header without config")
		}
	})
}
