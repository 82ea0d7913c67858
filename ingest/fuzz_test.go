package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	amf0 "github.com/yutopp/go-amf0"
	"github.com/yutopp/go-rtmp/message"

	"github.com/onairhq/onair/internal/metricstest"
)

// pipeListener hands net.Pipe connections to the RTMP server.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// drainConsumer reads every feed to its end and checks that DTS never goes back.
type drainConsumer struct {
	mu  sync.Mutex
	bad []string
}

func (d *drainConsumer) Consume(ctx context.Context, b *Broadcast, f *Feed) {
	var last [3]time.Duration
	var seen [3]bool
	for {
		au, err := f.Next(ctx)
		if err != nil {
			return
		}
		if seen[au.Kind] && au.DTS < last[au.Kind] {
			d.mu.Lock()
			d.bad = append(d.bad, "DTS went back")
			d.mu.Unlock()
		}
		seen[au.Kind], last[au.Kind] = true, au.DTS
	}
}

func (d *drainConsumer) problems() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.bad...)
}

// fuzzHub is a Hub serving connections that a fuzz target feeds.
type fuzzHub struct {
	hub  *Hub
	ln   *pipeListener
	logs *syncBuffer
	cons *drainConsumer
}

func newFuzzHub(tb testing.TB) *fuzzHub {
	logs := &syncBuffer{}
	h, err := NewHub(Options{
		Channels:     []ChannelConfig{{Name: "demo", Keys: []string{testKey}}},
		Grace:        -1,
		ConnsPerIP:   -1,
		AuthFailures: -1,
		Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		tb.Fatal(err)
	}
	fh := &fuzzHub{hub: h, ln: newPipeListener(), logs: logs, cons: &drainConsumer{}}
	h.AddConsumer(fh.cons)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Serve(ctx, fh.ln); close(done) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		h.Shutdown(sctx)
		cancel()
		<-done
	})
	return fh
}

// splitConn is one end of a connection made of two net.Pipes, one per
// direction, so that a client can stop writing and still read.
type splitConn struct{ r, w net.Conn }

func (c splitConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c splitConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c splitConn) LocalAddr() net.Addr                { return c.r.LocalAddr() }
func (c splitConn) RemoteAddr() net.Addr               { return c.r.RemoteAddr() }
func (c splitConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c splitConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }
func (c splitConn) SetDeadline(t time.Time) error {
	c.r.SetDeadline(t)
	return c.w.SetDeadline(t)
}
func (c splitConn) Close() error {
	c.r.Close()
	return c.w.Close()
}

// run sends stream after a handshake on a fresh connection, stops writing,
// reads until the server closes, and waits for the server to let go of it.
func (fh *fuzzHub) run(tb testing.TB, stream []byte) {
	up, upServer := net.Pipe()
	downServer, down := net.Pipe()
	server := splitConn{r: upServer, w: downServer}
	client := splitConn{r: down, w: up}
	select {
	case fh.ln.conns <- server:
	case <-time.After(5 * time.Second):
		tb.Fatal("the server does not accept")
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	// net.Pipe has no buffer: read what the server sends while writing.
	s0s1s2 := make(chan []byte, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s := make([]byte, 1+2*1536)
		if _, err := io.ReadFull(client, s); err != nil {
			s0s1s2 <- nil
			return
		}
		s0s1s2 <- s
		io.Copy(io.Discard, client)
	}()
	if _, err := client.Write(handshakeC0C1()); err == nil {
		if s := <-s0s1s2; s != nil {
			if _, err := client.Write(s[1 : 1+1536]); err == nil {
				client.Write(stream) // the server may close the connection before the end
			}
		}
	}
	up.Close() // end of input; keep reading until the server closes
	<-drained
	down.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fh.hub.mu.Lock()
		n := len(fh.hub.conns)
		fh.hub.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the server still holds %d connections after the client closed", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// publishSeed is what an encoder sends after the handshake: chunk size,
// connect, createStream, publish, metadata, sequence headers and frames.
func publishSeed(tb testing.TB, key string, chunkSize int) []byte {
	r := &rawClient{t: tb, chunkSize: 128}
	var b []byte
	b = append(b, r.messageBytes(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(chunkSize)), false)...)
	r.chunkSize = chunkSize
	b = append(b, r.messageBytes(3, msgCommandAMF0, 0, 0, amf(tb, "connect", 1.0, map[string]any{"app": "live", "tcUrl": "rtmp://x/live"}), false)...)
	b = append(b, r.messageBytes(3, msgCommandAMF0, 0, 0, amf(tb, "createStream", 2.0, nil), false)...)
	b = append(b, r.messageBytes(3, msgCommandAMF0, 1, 0, amf(tb, "publish", 3.0, nil, key, "live"), false)...)
	meta := amf(tb, "@setDataFrame", "onMetaData", amf0.ECMAArray{"videocodecid": 7.0, "audiocodecid": 10.0})
	b = append(b, r.messageBytes(5, msgDataAMF0, 1, 0, meta, false)...)
	b = append(b, r.messageBytes(6, msgVideo, 1, 0, legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS)), false)...)
	b = append(b, r.messageBytes(4, msgAudio, 1, 0, append([]byte{0xaf, 0}, testASC...), false)...)
	for i := range 4 {
		frame := legacyVideo(2, 7, 1, 33, lengthPrefixed(slice))
		if i == 0 {
			frame = legacyVideo(1, 7, 1, 0, lengthPrefixed(idr, bytes.Repeat([]byte{0x5a}, 300)))
		}
		b = append(b, r.messageBytes(6, msgVideo, 1, 0xfffff0+uint32(i*33), frame, true)...)
		b = append(b, r.messageBytes(4, msgAudio, 1, 0xfffff0+uint32(i*23), []byte{0xaf, 1, 0x21, 0x10}, true)...)
	}
	b = append(b, r.messageBytes(3, msgCommandAMF0, 0, 0, amf(tb, "deleteStream", 4.0, nil, 1.0), false)...)
	return b
}

// FuzzChunkStream drives bytes after the handshake into a real connection
// and session, through the chunk guard, go-rtmp and onair's handlers: nothing
// may panic (even inside go-rtmp's recovered loop), the connection must end
// when the client closes, DTS never goes back, and memory stays in proportion.
func FuzzChunkStream(f *testing.F) {
	f.Add(publishSeed(f, testKey, 4096))
	f.Add(publishSeed(f, testKey, 128))
	f.Add(publishSeed(f, "wrong", 4096))
	f.Add(append(chunkHeader(0, 3, 0, 20, msgCommandAMF0, 0), amf(f, "connect", 1.0, nil)...))
	f.Add(append(chunkHeader(0, 64, 0xffffff, 8, msgVideo, 1), 0, 0, 0, 0x10, 0x17, 1, 0, 0))
	fh := newFuzzHub(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		fh.logs.reset()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fh.run(t, stream)
		fh.hub.consumerWG.Wait()
		runtime.ReadMemStats(&after)
		if strings.Contains(fh.logs.String(), "anic") {
			t.Fatalf("panic:\n%s", fh.logs.String())
		}
		if p := fh.cons.problems(); len(p) > 0 {
			t.Fatalf("consumer: %v", p)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20+64*uint64(len(stream)) {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(stream))
		}
	})
}

// FuzzAMFReplay checks the AMF replay against go-rtmp's real decoding: when
// the replay lets a message through, go-amf0 must not panic, must read the
// same bytes and allocate in proportion; when it predicts a panic, go-amf0 must panic.
func FuzzAMFReplay(f *testing.F) {
	for _, b := range [][]byte{
		amf(f, "connect", 1.0, map[string]any{"app": "live", "flashVer": "FMLE/3.0", "tcUrl": "rtmp://x/live"}),
		amf(f, "publish", 3.0, nil, "key", "live"),
		amf(f, "foo", 1.0, []any{1.0, "a", map[string]any{"b": true}}, amf0.ECMAArray{"x": 1.0, "y": "z"}),
		amf(f, "@setDataFrame", "onMetaData", amf0.ECMAArray{"width": 320.0}),
		amf(f, "onCuePoint", map[string]any{"name": "x"}, nil),
		append(amf(f, "foo", 1.0), 0x08, 0, 0, 0, 2, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'b', 0x08, 0, 0, 0, 0, 0, 0, 9, 0, 0, 9),
		append([]byte{0x03, 0, 1, 'x', 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0x0a, 0, 0, 0, 2, 0x05, 0x05),
	} {
		f.Add(false, b)
		f.Add(true, b)
	}
	f.Fuzz(func(t *testing.T, command bool, b []byte) {
		r := &amfReplay{b: b}
		var err error
		if command {
			err = r.command()
		} else {
			err = r.data()
		}
		var v *violation
		if errors.As(err, &v) && !strings.Contains(v.detail, "panics") {
			return // refused for size or depth: go-amf0 would allocate or recurse too much to try
		}
		consumed, panicked, grew := realDecode(command, b)
		if v != nil {
			if !panicked {
				t.Fatalf("replay predicted a panic (%s); go-amf0 did not", v.detail)
			}
			return
		}
		if panicked {
			t.Fatal("go-amf0 panicked on a message the replay let through")
		}
		if consumed != r.pos {
			t.Fatalf("go-amf0 read %d bytes, the replay %d", consumed, r.pos)
		}
		if grew > 1<<20+256*uint64(len(b)) {
			t.Fatalf("go-amf0 allocated %d bytes for a %d-byte message", grew, len(b))
		}
	})
}

// realDecode decodes b as go-rtmp does an AMF0 command or data message and
// reports how many bytes go-amf0 read, whether it panicked and how much it allocated.
func realDecode(command bool, b []byte) (consumed int, panicked bool, grew uint64) {
	rd := bytes.NewReader(b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	func() {
		defer func() {
			if recover() != nil {
				panicked = true
			}
		}()
		var msg message.Message
		typ := message.TypeIDDataMessageAMF0
		if command {
			typ = message.TypeIDCommandMessageAMF0
		}
		if err := message.NewDecoder(rd).Decode(typ, &msg); err != nil {
			return
		}
		var v message.AMFConvertible
		switch m := msg.(type) {
		case *message.CommandMessage:
			if m.CommandName == "_result" || m.CommandName == "_error" {
				return
			}
			message.CmdBodyDecoderFor(m.CommandName, m.TransactionID)(m.Body, message.NewAMFDecoder(m.Body, m.Encoding), &v)
		case *message.DataMessage:
			if m.Name == "@setDataFrame" {
				return
			}
			message.DataBodyDecoderFor(m.Name)(m.Body, message.NewAMFDecoder(m.Body, m.Encoding), &v)
		}
	}()
	runtime.ReadMemStats(&after)
	return len(b) - rd.Len(), panicked, after.TotalAlloc - before.TotalAlloc
}

// FuzzMetadataHints checks onair's onMetaData reader: it never panics, and
// where go-amf0 reads the same object it finds the same codec hints.
func FuzzMetadataHints(f *testing.F) {
	f.Add(amf(f, "onMetaData", amf0.ECMAArray{"videocodecid": 7.0, "audiocodecid": 10.0, "width": 320.0}))
	f.Add(amf(f, "onMetaData", map[string]any{"videocodecid": "hvc1", "trackinfo": []any{map[string]any{"a": 1.0}}}))
	f.Add(amf(f, "onMetaData", amf0.ECMAArray{"audiocodecid": 0.0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, a, ok := parseMetadataHints(b)
		if !ok {
			return
		}
		// go-amf0, only where the replay says it is safe to run.
		if err := (&amfReplay{b: b}).rest(); err != nil && !errors.Is(err, errAMFStop) {
			return
		}
		var name string
		var obj any
		decoded := false
		func() {
			defer func() { recover() }()
			dec := amf0.NewDecoder(bytes.NewReader(b))
			decoded = dec.Decode(&name) == nil && dec.Decode(&obj) == nil
		}()
		if !decoded {
			return
		}
		var m map[string]any
		switch o := obj.(type) {
		case map[string]any:
			m = o
		case amf0.ECMAArray:
			m = o
		default:
			return
		}
		present := func(k string) bool {
			switch x := m[k].(type) {
			case float64:
				return x != 0 && x == x
			case string:
				return x != ""
			}
			return false
		}
		if present("videocodecid") != v || present("audiocodecid") != a {
			t.Fatalf("hints %v %v; go-amf0 read %v", v, a, m)
		}
	})
}

// The fuzz harness reaches the media path: its publish seed starts a broadcast
// and feeds frames across the extended-timestamp boundary.
func TestFuzzHarnessPublishes(t *testing.T) {
	fh := newFuzzHub(t)
	fh.run(t, publishSeed(t, testKey, 128))
	var m bytes.Buffer
	metricstest.Write(&m, fh.hub)
	if !strings.Contains(m.String(), "onair_ingest_broadcasts_started_total 1") ||
		!strings.Contains(m.String(), `onair_ingest_broadcasts_ended_total{reason="stopped"} 1`) {
		t.Fatalf("the seed did not publish:\n%s\n%s", m.String(), fh.logs.String())
	}
}

// tagRecords encodes media messages for FuzzSessionTags: kind (8 audio, 9
// video), a 32-bit timestamp, a 16-bit length and the tag body.
func tagRecords(tags ...flvTag) []byte {
	var b []byte
	for _, t := range tags {
		b = append(b, t.typ)
		b = binary.BigEndian.AppendUint32(b, t.ts)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.data)))
		b = append(b, t.data...)
	}
	return b
}

// FuzzSessionTags feeds audio and video messages straight into a publishing
// session: tag parsing (FLV and Enhanced RTMP), the wait for the track set,
// the timeline and the feeds. Nothing may panic and DTS never goes back.
func FuzzSessionTags(f *testing.F) {
	h264 := tagRecords(
		flvTag{msgVideo, 0, legacyVideo(1, 7, 0, 0, avcConfig(testSPS, testPPS))},
		flvTag{msgAudio, 0, append([]byte{0xaf, 0}, testASC...)},
		flvTag{msgVideo, 0, legacyVideo(1, 7, 1, 66, lengthPrefixed(idr))},
		flvTag{msgAudio, 10, []byte{0xaf, 1, 0x21, 0x10}},
		flvTag{msgVideo, 33, legacyVideo(2, 7, 1, 0, lengthPrefixed(slice))},
		flvTag{msgVideo, 0xfffffff0, legacyVideo(2, 7, 1, 0, lengthPrefixed(slice))},
		flvTag{msgVideo, 20, legacyVideo(2, 7, 1, 0, lengthPrefixed(slice))},
	)
	f.Add(h264)
	f.Add(tagRecords(
		flvTag{msgVideo, 0, exVideo(1, exSequenceStart, "hvc1", hevcConfig(testVPS, testHEVCSPS, testHEVCPPS))},
		flvTag{msgVideo, 0, exVideo(1, exCodedFrames, "hvc1", append([]byte{0, 0, 40}, lengthPrefixed([]byte{0x26, 0x01, 0xaf})...))},
		flvTag{msgAudio, 0, []byte("\x90OpusOpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00")},
		flvTag{msgAudio, 20, []byte("\x91Opus\xfc")},
	))
	f.Add(tagRecords(
		flvTag{msgVideo, 0, exVideo(1, exSequenceStart, "av01", []byte{0x81, 0, 0, 0, 0x0a, 0x0b, 0, 0, 0, 0x42, 0xab, 0xbf, 0xc3, 0x71, 0xab, 0xe6, 0x01})},
		flvTag{msgVideo, 0, exVideo(1, exCodedFramesX, "av01", []byte{0x12, 0, 0x32, 1, 0})},
	))
	logs := &syncBuffer{}
	h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "demo", Keys: []string{testKey}}}, Grace: -1,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		f.Fatal(err)
	}
	cons := &drainConsumer{}
	h.AddConsumer(cons)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
	ch := h.channels["demo"]
	f.Fuzz(func(t *testing.T, b []byte) {
		logs.reset()
		s := &session{hub: h, c: &conn{hub: h, guard: newChunkGuard()}, remote: "fuzz", lengthSize: 4, ch: ch}
		if ref := h.claim(ch, s); ref != nil {
			t.Fatalf("claim: %s", ref.desc)
		}
		s.state = stateDeciding
		for len(b) >= 7 {
			kind, ts, n := b[0], binary.BigEndian.Uint32(b[1:5]), int(binary.BigEndian.Uint16(b[5:7]))
			b = b[7:]
			n = min(n, len(b))
			body := bytes.NewReader(b[:n])
			b = b[n:]
			var err error
			if kind&1 == 0 {
				err = s.OnAudio(ts, body)
			} else {
				err = s.OnVideo(ts, body)
			}
			if err != nil {
				break // the connection would end here
			}
		}
		if s.state == stateDeciding || s.state == stateLive {
			s.finish(false)
		}
		h.consumerWG.Wait()
		if strings.Contains(logs.String(), "panicked") {
			t.Fatalf("panic:\n%s", logs.String())
		}
		if p := cons.problems(); len(p) > 0 {
			t.Fatalf("consumer: %v", p)
		}
	})
}
