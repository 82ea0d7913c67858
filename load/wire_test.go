package load

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

func TestAMF0(t *testing.T) {
	enc := appendAMF(nil, "connect")
	enc = appendAMF(enc, 1)
	enc = appendAMF(enc, amfObj{{"app", "live"}, {"flag", true}, {"n", 2.5}})
	enc = appendAMF(enc, nil)
	got, err := readAMFAll(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"connect", 1.0, map[string]any{"app": "live", "flag": true, "n": 2.5}, nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v, want %#v", got, want)
	}
	// Values servers send that we only decode: ECMA array, strict array, undefined.
	ecma := []byte{amfECMAArray, 0, 0, 0, 1, 0, 1, 'k', amfString, 0, 1, 'v', 0, 0, amfObjectEnd,
		amfStrict, 0, 0, 0, 2, amfNumber, 0, 0, 0, 0, 0, 0, 0, 0, amfUndefined}
	got, err = readAMFAll(ecma)
	if err != nil {
		t.Fatal(err)
	}
	want = []any{map[string]any{"k": "v"}, []any{0.0, nil}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v, want %#v", got, want)
	}
	bad := map[string][]byte{
		"short number":      {amfNumber, 1, 2},
		"short string":      {amfString, 0, 9, 'a'},
		"unknown marker":    {0x11},
		"huge strict":       {amfStrict, 0xff, 0xff, 0xff, 0xff},
		"unclosed object":   {amfObject, 0, 1, 'a', amfNull},
		"nested too deep":   bytes.Repeat([]byte{amfStrict, 0, 0, 0, 1}, 40),
		"short long string": {amfLongStr, 0, 0, 1, 0, 'x'},
	}
	for name, b := range bad {
		if _, err := readAMFAll(b); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

// TestChunkRoundTrip writes messages as the publisher does (prepared
// bodies and extended timestamps) and reads them back with the reader.
func TestChunkRoundTrip(t *testing.T) {
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	type msg struct {
		typ  byte
		ts   uint32
		body []byte
	}
	for _, size := range []int{128, 4096, 60000} {
		var wire []byte
		wire = appendMessage(wire, csControl, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(size)), 128)
		sent := []msg{
			{msgVideo, 0, payload(10)},
			{msgVideo, 40, payload(100_000)},
			{msgAudio, 41, payload(0)},
			{msgAudio, 0xfffffe, payload(9000)},  // last plain timestamp
			{msgVideo, 0xffffff, payload(9000)},  // first extended one
			{msgVideo, 0xfffffff0, payload(300)}, // near the 32-bit wrap
		}
		for _, m := range sent {
			cs := byte(csVideo)
			if m.typ == msgAudio {
				cs = csAudio
			}
			if m.ts < extendedTS {
				wire = appendType0(wire, cs, m.ts, len(m.body), m.typ, 1)
				wire = append(wire, chunkBody(cs, m.body, size)...)
			} else {
				wire = appendMessage(wire, cs, m.typ, 1, m.ts, m.body, size)
			}
		}
		cr := newChunkReader(bytes.NewReader(wire))
		if m, err := cr.next(); err != nil || m.typ != msgSetChunkSize || cr.chunkSize != uint32(size) {
			t.Fatalf("chunk size %d: first message %+v, %v", size, m, err)
		}
		for i, want := range sent {
			m, err := cr.next()
			if err != nil {
				t.Fatalf("chunk size %d, message %d: %v", size, i, err)
			}
			if m.typ != want.typ || m.ts != want.ts || m.msid != 1 || !bytes.Equal(m.body, want.body) {
				t.Fatalf("chunk size %d, message %d: type %d ts %#x msid %d, %d bytes; want type %d ts %#x, %d bytes",
					size, i, m.typ, m.ts, m.msid, len(m.body), want.typ, want.ts, len(want.body))
			}
		}
		if cr.read != uint64(len(wire)) {
			t.Fatalf("reader counted %d bytes of %d", cr.read, len(wire))
		}
	}
}

func TestChunkReaderRefuses(t *testing.T) {
	big := appendType0(nil, 3, 0, 2<<20, msgCommand, 0)
	cases := map[string][]byte{
		"type-1 header first": {0x43, 0, 0, 0, 0, 0, 1, 20, 0},
		"oversized message":   big,
		"zero chunk size":     appendMessage(nil, csControl, msgSetChunkSize, 0, 0, []byte{0, 0, 0, 0}, 128),
	}
	for name, b := range cases {
		_, err := newChunkReader(bytes.NewReader(b)).next()
		if err == nil || strings.Contains(err.Error(), "EOF") {
			t.Errorf("%s: error %v, want a refusal", name, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in, host, app, tcurl, err string
	}{
		{"rtmp://127.0.0.1:1935/live", "127.0.0.1:1935", "live", "rtmp://127.0.0.1:1935/live", ""},
		{"rtmp://example.com/live/", "example.com:1935", "live", "rtmp://example.com/live", ""},
		{"rtmp://example.com/live/key", "", "", "", "stream names come from"},
		{"http://example.com/live", "", "", "", "want rtmp://"},
		{"rtmp://example.com", "", "", "", "want rtmp://"},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.Host != c.host || got.App != c.app || got.TCURL != c.tcurl {
			t.Errorf("%s: %+v, %v", c.in, got, err)
		}
	}
}
