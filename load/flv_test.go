package load

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// flvFile builds an FLV file from tags; corrupt may alter each tag's bytes.
func flvFile(tags []Tag, corrupt func(i int, b []byte) []byte) []byte {
	b := []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0}
	for i, t := range tags {
		var tb []byte
		tb = append(tb, t.Type, byte(len(t.Data)>>16), byte(len(t.Data)>>8), byte(len(t.Data)),
			byte(t.Timestamp>>16), byte(t.Timestamp>>8), byte(t.Timestamp), byte(t.Timestamp>>24), 0, 0, 0)
		tb = append(tb, t.Data...)
		tb = binary.BigEndian.AppendUint32(tb, uint32(11+len(t.Data)))
		if corrupt != nil {
			tb = corrupt(i, tb)
		}
		b = append(b, tb...)
	}
	return b
}

func TestReadFLV(t *testing.T) {
	tags := []Tag{
		{Type: tagScript, Timestamp: 0, Data: []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}},
		{Type: tagVideo, Timestamp: 0, Data: []byte{0x17, 0, 0, 0, 0, 1, 2, 3}},
		{Type: tagAudio, Timestamp: 21, Data: []byte{0xaf, 1, 9, 9}},
		{Type: tagVideo, Timestamp: 0x01000021, Data: []byte{0x27, 1, 0, 0, 33, 4}}, // timestamp above 24 bits
	}
	cases := []struct {
		name    string
		file    []byte
		want    []Tag
		wantErr string
	}{
		{"valid", flvFile(tags, nil), tags, ""},
		{"header only", flvFile(nil, nil), nil, ""},
		{"not FLV", append([]byte("FLX"), flvFile(tags, nil)[3:]...), nil, "no \"FLV\" signature"},
		{"short header", []byte("FLV\x01"), nil, "FLV header"},
		{"truncated tag header", flvFile(tags, nil)[:13+5], nil, "tag header at byte 13 truncated"},
		{"truncated body", flvFile(tags, nil)[:13+11+3], nil, "truncated: its header says 13 bytes"},
		{"wrong PreviousTagSize", flvFile(tags, func(i int, b []byte) []byte {
			if i == 2 {
				b[len(b)-1]++
			}
			return b
		}), nil, "PreviousTagSize 16, want 15"},
		{"encrypted", flvFile(tags, func(i int, b []byte) []byte {
			if i == 1 {
				b[0] |= 0x20
			}
			return b
		}), nil, "encrypted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadFLV(bytes.NewReader(c.file))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("tags %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPrepareMediaHandMade(t *testing.T) {
	tags := []Tag{
		{Type: tagScript, Timestamp: 1000, Data: []byte{2, 0, 1, 'x'}},
		{Type: tagVideo, Timestamp: 1000, Data: []byte{0x17, 0, 0, 0, 0, 1}}, // AVC sequence header
		{Type: tagAudio, Timestamp: 1000, Data: []byte{0xaf, 0, 0x12, 0x10}}, // AAC sequence header
		{Type: tagVideo, Timestamp: 1000, Data: bytes.Repeat([]byte{0x17, 1}, 150)},
		{Type: tagAudio, Timestamp: 1010, Data: []byte{0xaf, 1, 1}},
		{Type: tagVideo, Timestamp: 1033, Data: []byte{0x27, 1, 0, 0, 0}},
		{Type: tagAudio, Timestamp: 1031, Data: []byte{0xaf, 1, 2}},
		{Type: tagVideo, Timestamp: 1066, Data: []byte{0x27, 1, 0, 0, 0}},
	}
	m, err := PrepareMedia(tags, 128)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.start) != 3 || m.start[0].typ != msgData || m.start[1].typ != msgVideo || m.start[2].typ != msgAudio {
		t.Fatalf("start messages %+v, want @setDataFrame and two sequence headers", m.start)
	}
	if v, rest, _ := readAMF(m.start[0].payload); v != "@setDataFrame" || !bytes.Equal(rest, tags[0].Data) {
		t.Fatalf("metadata payload %q", m.start[0].payload)
	}
	var ts []uint32
	for _, p := range m.loop {
		ts = append(ts, p.ts)
	}
	if want := []uint32{0, 10, 33, 31, 66}; !reflect.DeepEqual(ts, want) {
		t.Fatalf("loop timestamps %v, want %v (rebased, file order)", ts, want)
	}
	// Video: last at 66 + its last gap 33 = 99; audio: 31 + 21 = 52.
	if m.loopDur != 99 {
		t.Fatalf("loop lasts %d ms, want 99", m.loopDur)
	}
	// The 300-byte keyframe is cut into 128-byte chunks with type-3 headers.
	body := m.loop[0].body
	if len(body) != 302 || body[128] != 0xc0|csVideo || body[257] != 0xc0|csVideo {
		t.Fatalf("chunked body of %d bytes, markers %x %x", len(body), body[128], body[257])
	}
	if _, err := PrepareMedia(tags[:3], 4096); err == nil {
		t.Fatal("a recording of sequence headers only was accepted")
	}
	if _, err := PrepareMedia(tags, 64); err == nil {
		t.Fatal("chunk size 64 was accepted")
	}
}

var (
	clipOnce sync.Once
	clipPath string
	clipErr  error
)

// testClip encodes (once per test binary) 2 s of 320x240 H.264 with
// B-frames and AAC, like a broadcaster's stream but small.
func testClip(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("encodes media with ffmpeg: skipped with -short")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
	clipOnce.Do(func() {
		var dir string
		dir, clipErr = os.MkdirTemp("", "onair-load-")
		if clipErr != nil {
			return
		}
		clipPath = filepath.Join(dir, "clip.flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
			"-c:v", "libx264", "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
			"-f", "flv", clipPath).CombinedOutput()
		if err != nil {
			clipErr = err
			t.Logf("ffmpeg: %s", out)
		}
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if clipPath != "" {
		os.RemoveAll(filepath.Dir(clipPath))
	}
	os.Exit(code)
}

func TestReadFLVFromFFmpeg(t *testing.T) {
	tags, err := ReadFLVFile(testClip(t))
	if err != nil {
		t.Fatal(err)
	}
	var video, audio, keys int
	var bframes bool
	for _, tg := range tags {
		switch tg.Type {
		case tagVideo:
			if !isSequenceHeader(tg) {
				video++
				if tg.Data[0]>>4 == 1 {
					keys++
				}
				if cts := int32(uint32(tg.Data[2])<<16|uint32(tg.Data[3])<<8|uint32(tg.Data[4])) << 8 >> 8; cts > 0 {
					bframes = true // a frame shown later than decoded
				}
			}
		case tagAudio:
			if !isSequenceHeader(tg) {
				audio++
			}
		}
	}
	if video < 59 || video > 62 || keys != (video+29)/30 || !bframes {
		t.Fatalf("%d video frames, %d keyframes, composition offsets %v; want ~60, one per 30, true", video, keys, bframes)
	}
	if audio < 90 || audio > 96 { // 2 s of 1024-sample frames at 48 kHz
		t.Fatalf("%d audio frames, want ~94", audio)
	}
	m, err := PrepareMedia(tags, DefaultChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.start) != 3 {
		t.Fatalf("%d start messages, want metadata and two sequence headers", len(m.start))
	}
	if d := m.Duration().Milliseconds(); d < 1990 || d > 2100 { // AAC priming may run audio a little past video
		t.Fatalf("loop lasts %d ms, want ~2000", d)
	}
	if len(m.loop) != video+audio {
		t.Fatalf("%d loop messages, want %d", len(m.loop), video+audio)
	}
}
