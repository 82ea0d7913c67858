package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	rtmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"
)

// guardReader reads src through a chunk guard in reads of the sizes sizes gives.
type guardReader struct {
	g     *chunkGuard
	src   io.Reader
	sizes func() int
}

func (r *guardReader) Read(p []byte) (int, error) {
	for {
		k := copy(p, r.g.pending())
		n, err := r.src.Read(p[k:min(len(p), k+r.sizes())])
		m, gerr := r.g.filter(p[:k+n])
		if gerr != nil {
			return 0, gerr
		}
		if m > 0 || err != nil {
			return m, err
		}
	}
}

// readMessages decodes every message go-rtmp's chunk reader finds in what the
// guard passes on, as go-rtmp's connection reads them.
func readMessages(t *testing.T, stream []byte, sizes func() int) ([][]byte, error) {
	t.Helper()
	g := newChunkGuard()
	g.handshake = 0
	g.published = true
	cs := rtmp.NewChunkStreamer(&guardReader{g: g, src: bytes.NewReader(stream), sizes: sizes}, io.Discard,
		&rtmp.StreamControlStateConfig{DefaultChunkSize: 128, MaxChunkSize: MaxPeerChunkSize, MaxChunkStreams: MaxChunkStreams,
			DefaultAckWindowSize: math.MaxInt32, MaxAckWindowSize: math.MaxInt32, MaxMessageSize: MaxMessageSize})
	defer cs.Close()
	var out [][]byte
	for {
		var cmsg rtmp.ChunkMessage
		_, _, err := cs.Read(&cmsg)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		switch m := cmsg.Message.(type) {
		case *message.VideoMessage:
			b, _ := io.ReadAll(m.Payload)
			out = append(out, b)
		case *message.SetChunkSize:
			if err := cs.PeerState().SetChunkSize(m.ChunkSize); err != nil {
				return out, err
			}
		}
	}
}

// ffmpeg repeats the extended timestamp on type-3 chunks; go-rtmp does not
// expect it there. The guard removes it however the reads split the bytes,
// and leaves streams without it alone.
func TestChunkGuardExtendedTimestamp(t *testing.T) {
	r := &rawClient{t: t, chunkSize: 128}
	frames := [][]byte{bytes.Repeat([]byte{0xab}, 1000), bytes.Repeat([]byte{0xcd}, 300), {0x17, 1}}
	for _, ext := range []bool{true, false} {
		var stream []byte
		for i, f := range frames {
			stream = append(stream, r.messageBytes(6, msgVideo, 1, 0x1000000+uint32(i)*33, f, ext)...)
		}
		for name, sizes := range map[string]func() int{
			"one read":       func() int { return 1 << 20 },
			"byte by byte":   func() int { return 1 },
			"random splits":  func() int { return 1 + rand.IntN(9) },
			"4-byte splits":  func() int { return 4 },
			"130-byte reads": func() int { return 130 },
		} {
			got, err := readMessages(t, stream, sizes)
			if err != nil {
				t.Fatalf("ext %v, %s: %v", ext, name, err)
			}
			if len(got) != len(frames) {
				t.Fatalf("ext %v, %s: %d messages", ext, name, len(got))
			}
			for i := range frames {
				if !bytes.Equal(got[i], frames[i]) {
					t.Fatalf("ext %v, %s: message %d differs", ext, name, i)
				}
			}
		}
	}
}

// The guard follows SetChunkSize and the 2-byte chunk stream ID form as go-rtmp does.
func TestChunkGuardFollowsStream(t *testing.T) {
	r := &rawClient{t: t, chunkSize: 128}
	var stream []byte
	stream = append(stream, r.messageBytes(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 4096), false)...)
	r.chunkSize = 4096
	want := [][]byte{bytes.Repeat([]byte{1}, 10000), bytes.Repeat([]byte{2}, 5000)}
	stream = append(stream, r.messageBytes(70, msgVideo, 1, 0, want[0], false)...)
	stream = append(stream, r.messageBytes(319, msgVideo, 1, 40, want[1], false)...)
	got, err := readMessages(t, stream, func() int { return 1 + rand.IntN(5000) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
		t.Fatalf("got %d messages", len(got))
	}
}

func TestCheckAMF(t *testing.T) {
	tests := []struct {
		name string
		cmd  bool
		body []byte
		ok   bool
	}{
		{"connect", true, amf(t, "connect", 1.0, map[string]any{"app": "live", "tcUrl": "rtmp://x/live"}), true},
		{"publish", true, amf(t, "publish", 3.0, nil, "key", "live"), true},
		{"unknown command with arrays", true, amf(t, "foo", 1.0, []any{1.0, "a", []any{2.0}}), true},
		{"setDataFrame", false, amf(t, "@setDataFrame", "onMetaData", map[string]any{"width": 1.0}), true},
		{"onCuePoint", false, amf(t, "onCuePoint", map[string]any{"name": "x"}), true},
		{"huge strict array", true, append(amf(t, "foo", 1.0), 0x0a, 0x7f, 0xff, 0xff, 0xff), false},
		{"strict array into connect's map", true, append(amf(t, "connect", 1.0), 0x0a, 0x7f, 0xff, 0xff, 0xff), true},
		{"array in an ECMA array's second property", true,
			append(amf(t, "foo", 1.0), 0x08, 0, 0, 0, 2, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'b', 0x0a, 0, 0, 0, 1, 0x05, 0, 0, 9), false},
		{"object as the name, then a huge strict array", true,
			append([]byte{0x03, 0, 1, 'x', 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0x0a, 0x10, 0, 0, 0), false},
		{"deep nesting", true, append(amf(t, "foo", 1.0), nestedAMF(40)...), false},
		{"truncated", true, amf(t, "connect")[:3], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := checkAMFData
			if tt.cmd {
				check = checkAMFCommand
			}
			if err := check(tt.body); (err == nil) != tt.ok {
				t.Fatalf("check = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// contain turns a panic in a session's handling into an error for that connection.
func TestSessionContainsPanics(t *testing.T) {
	logs := &syncBuffer{}
	h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "one", Keys: []string{"k"}}}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{hub: h, guard: newChunkGuard()}
	s := &session{hub: h, c: c, state: stateDeciding} // no channel: handling media panics
	err = s.OnVideo(0, bytes.NewReader([]byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}))
	if err == nil || c.why() == "" {
		t.Fatalf("err = %v, reason %q", err, c.why())
	}
	if !strings.Contains(logs.String(), "rtmp handler panicked") {
		t.Fatal("the panic was not logged")
	}
}
