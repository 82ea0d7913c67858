package ingest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fault suite: each case shows the behaviour a fault must have, and that
// goroutines and file descriptors return to where they were.

type resources struct{ goroutines, fds int }

func snapshot() resources {
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return resources{runtime.NumGoroutine(), fds}
}

// settle waits until goroutines and descriptors are back near base.
func settle(t *testing.T, base resources) {
	t.Helper()
	const slack = 4
	var now resources
	deadline := time.Now().Add(15 * time.Second)
	for {
		now = snapshot()
		if now.goroutines <= base.goroutines+slack && now.fds <= base.fds+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("not back to baseline: %+v, was %+v\n%s", now, base, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawPublisher connects from local, publishes on the demo channel and returns
// once the publish is confirmed.
func rawPublisher(t *testing.T, ts *testServer, local string) *rawClient {
	t.Helper()
	r := dialRaw(t, ts.addr, local).handshake()
	if err := r.setChunkSize(4096); err != nil {
		t.Fatal(err)
	}
	if err := r.connectPublish("live", testKey); err != nil {
		t.Fatal(err)
	}
	if !r.readUntil("NetStream.Publish.Start", 3*time.Second) {
		t.Fatal("no publish confirmation")
	}
	r.drain()
	return r
}

// sendTags publishes tags with timestamps mapped by tsOf, at speed times real time (0: at once).
func sendTags(t *testing.T, r *rawClient, tags []flvTag, speed float64, tsOf func(i int, tag flvTag) uint32) {
	t.Helper()
	start := time.Now()
	for i, tag := range tags {
		if speed > 0 {
			due := start.Add(time.Duration(float64(tag.ts)/speed) * time.Millisecond)
			time.Sleep(time.Until(due))
		}
		if err := r.publishTag(tag, tsOf(i, tag)); err != nil {
			t.Fatalf("tag %d: %v", i, err)
		}
	}
}

func sameTS(_ int, tag flvTag) uint32 { return tag.ts }

func (ts *testServer) onlyBroadcast(t *testing.T) *Broadcast {
	t.Helper()
	waitFor(t, "a broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) > 0 })
	bs := ts.rec.broadcasts()
	if len(bs) != 1 {
		t.Fatalf("%d broadcasts, want 1", len(bs))
	}
	return bs[0]
}

func countVideo(tags []flvTag) int {
	n := 0
	for _, tag := range tags {
		if tag.typ == msgVideo && len(tag.data) > 1 && tag.data[1] == 1 { // coded frames, not headers or end of sequence
			n++
		}
	}
	return n
}

// A publisher reset in the middle of a chunk: the broadcast waits out its
// grace period and ends; what arrived before is kept; nothing leaks.
func TestFaultResetMidChunk(t *testing.T) {
	needTools(t, "ffmpeg")
	tags := readFLV(t, filepath.Join(testMedia(t), "h264aac.flv"))
	ts := startHub(t, func(o *Options) { o.Grace = 500 * time.Millisecond })
	base := snapshot()
	r := rawPublisher(t, ts, "")
	sendTags(t, r, tags[:len(tags)/2], 0, sameTS)
	b := ts.onlyBroadcast(t)
	// A reset discards what the server has not read yet: let it read first.
	sent := countVideo(tags[:len(tags)/2])
	waitFor(t, "the frames sent", 3*time.Second, func() bool { return len(ts.rec.unitsOf(b.ID, KindVideo)) >= sent })
	// Half of a 50 KB video message, then a TCP reset.
	if err := r.write(append(chunkHeader(0, 6, 2000, 50000, msgVideo, 1), make([]byte, 1000)...)); err != nil {
		t.Fatal(err)
	}
	r.c.(*net.TCPConn).SetLinger(0)
	r.c.Close()
	waitEnded(t, ts, b.ID, 3*time.Second)
	if ev := ts.obs.list(); len(ev) != 2 || ev[1] != "end "+b.ID+" timeout" {
		t.Errorf("events %v", ev)
	}
	if n := len(ts.rec.unitsOf(b.ID, KindVideo)); n != sent {
		t.Errorf("%d video units kept, %d sent", n, sent)
	}
	settle(t, base)
}

// A publisher that goes silent with its connection open is dropped after the
// idle timeout; its broadcast then waits out the grace period.
func TestFaultSilentPublisher(t *testing.T) {
	needTools(t, "ffmpeg")
	tags := readFLV(t, filepath.Join(testMedia(t), "h264aac.flv"))
	ts := startHub(t, func(o *Options) { o.Grace = 300 * time.Millisecond; o.IdleTimeout = time.Second })
	base := snapshot()
	r := rawPublisher(t, ts, "")
	sendTags(t, r, tags[:len(tags)/2], 0, sameTS)
	b := ts.onlyBroadcast(t)
	silent := time.Now()
	waitEnded(t, ts, b.ID, 4*time.Second)
	if d := time.Since(silent); d < time.Second {
		t.Errorf("ended %v after the publisher went silent, before the idle timeout", d)
	}
	if !strings.Contains(ts.logs.String(), "no data for 1s") {
		t.Error("the log does not say why the publisher was dropped")
	}
	r.c.Close()
	settle(t, base)
}

// 500 half-open connections and 1,000 wrong-key attempts, from many
// addresses, while a healthy publisher streams: it loses nothing and is not
// delayed.
func TestFaultFloodWhileStreaming(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	ts := startHub(t, nil)
	base := snapshot()
	cmd, out := publish(t, filepath.Join(dir, "long.flv"), ts.url("live", testKey))
	b := ts.onlyBroadcast(t)

	var halfOpen []net.Conn
	for i := range 500 {
		local := fmt.Sprintf("127.0.1.%d", 1+i/25) // 25 per address, under the per-address limit
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(handshakeC0C1()[:100])
		halfOpen = append(halfOpen, c)
	}
	waitFor(t, "500 pre-publish connections", 5*time.Second, func() bool {
		return strings.Contains(ts.metrics(), "onair_ingest_prepublish_connections 500")
	})
	var attempts, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			local := fmt.Sprintf("127.0.2.%d", 1+w%10)
			for range 50 {
				attempts.Add(1)
				r := dialRaw(t, ts.addr, local)
				r.c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := r.c.Write(handshakeC0C1()); err == nil {
					s := make([]byte, 3073)
					if _, err := readFull(r.c, s); err == nil {
						r.c.Write(s[1:1537])
						r.connectPublish("live", "wrong-key-guess")
					}
				}
				if r.closedWithin(5 * time.Second) {
					refused.Add(1)
				}
				r.c.Close()
			}
		})
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("healthy publisher: %v: %s", err, out.String())
	}
	waitEnded(t, ts, b.ID, 3*time.Second)
	if attempts.Load() != 1000 || refused.Load() != 1000 {
		t.Errorf("%d wrong-key attempts, %d refused", attempts.Load(), refused.Load())
	}
	m := ts.metrics()
	if !strings.Contains(m, `reason="bad_key"`) || !strings.Contains(m, `reason="auth_backoff"`) {
		t.Errorf("refusals not counted:\n%s", m)
	}
	v := ts.rec.unitsOf(b.ID, KindVideo)
	if len(v) != 360 {
		t.Errorf("%d of 360 video frames arrived", len(v))
	}
	var worst time.Duration
	for i := 1; i < len(v); i++ {
		if v[i].DTS-v[i-1].DTS != v[1].DTS-v[0].DTS && v[i].DTS-v[i-1].DTS > 40*time.Millisecond {
			t.Fatalf("DTS step %v at frame %d", v[i].DTS-v[i-1].DTS, i)
		}
		worst = max(worst, v[i].Received.Sub(v[i-1].Received))
	}
	t.Logf("healthy publisher: %d frames; longest wait between frames %v; %d refused keys", len(v), worst, refused.Load())
	if worst > 750*time.Millisecond {
		t.Errorf("a frame waited %v behind the previous one", worst)
	}
	if ev := ts.obs.list(); len(ev) != 2 || ev[1] != "end "+b.ID+" stopped" {
		t.Errorf("events %v", ev)
	}
	for _, c := range halfOpen {
		c.Close()
	}
	settle(t, base)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Timestamps that jump forward, go backwards or wrap at 2^32 ms: the
// broadcast goes on, one broadcast, its DTS rising by one frame at each step.
func TestFaultTimestamps(t *testing.T) {
	needTools(t, "ffmpeg")
	tags := readFLV(t, filepath.Join(testMedia(t), "h264aac.flv"))
	const wrapBase = 1<<32 - 2000 // 2 s before the 32-bit millisecond wrap
	tests := []struct {
		name string
		tsOf func(i int, tag flvTag) uint32
	}{
		{"jump 40 s forward", func(_ int, tag flvTag) uint32 {
			if tag.ts >= 2000 {
				return tag.ts + 40000
			}
			return tag.ts
		}},
		{"back 5 s", func(_ int, tag flvTag) uint32 {
			if tag.ts < 2000 {
				return tag.ts + 5000 // then from 7 s back to 2 s
			}
			return tag.ts
		}},
		{"wrap at 2^32 ms", func(_ int, tag flvTag) uint32 { return tag.ts + wrapBase }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startHub(t, nil)
			base := snapshot()
			r := rawPublisher(t, ts, "")
			sendTags(t, r, tags, 4, tt.tsOf)
			if err := r.command(0, "deleteStream", 4.0, nil, 1.0); err != nil {
				t.Fatal(err)
			}
			b := ts.onlyBroadcast(t)
			waitEnded(t, ts, b.ID, 3*time.Second)
			checkSmoothDTS(t, ts.rec.unitsOf(b.ID, KindVideo), countVideo(tags))
			checkSmoothDTS(t, ts.rec.unitsOf(b.ID, KindAudio), -1)
			r.c.Close()
			settle(t, base)
		})
	}
	// ffmpeg puts the extended timestamp on every type-3 chunk once
	// timestamps pass 0xFFFFFF ms (4 h 39 min); go-rtmp alone misreads those.
	t.Run("ffmpeg across the wrap", func(t *testing.T) {
		ts := startHub(t, nil)
		cmd, out := publish(t, filepath.Join(testMedia(t), "long.flv"), ts.url("live", testKey), "-output_ts_offset", "4294960")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, out.String())
		}
		b := ts.onlyBroadcast(t)
		waitEnded(t, ts, b.ID, 3*time.Second)
		checkSmoothDTS(t, ts.rec.unitsOf(b.ID, KindVideo), 360)
	})
}

// checkSmoothDTS checks that units (want of them, unless negative) have rising
// DTS with no step over 100 ms.
func checkSmoothDTS(t *testing.T, units []AccessUnit, want int) {
	t.Helper()
	if want >= 0 && len(units) != want {
		t.Errorf("%d units, want %d", len(units), want)
	}
	for i := 1; i < len(units); i++ {
		if d := units[i].DTS - units[i-1].DTS; d < 0 || d > 100*time.Millisecond {
			t.Fatalf("DTS step %v at unit %d (%v → %v)", d, i, units[i-1].DTS, units[i].DTS)
		}
	}
}

// No keyframe for 30 s (none at all, or none after the first): the broadcast
// starts from the sequence headers and every frame is forwarded.
func TestFaultNoKeyframe(t *testing.T) {
	needTools(t, "ffmpeg")
	tags := readFLV(t, filepath.Join(testMedia(t), "h264aac.flv"))
	var headers, inter []flvTag
	var key flvTag
	for _, tag := range tags {
		switch {
		case tag.config():
			headers = append(headers, tag)
		case tag.key() && key.data == nil:
			key = tag
		case tag.typ == msgVideo && !tag.key():
			inter = append(inter, tag)
		}
	}
	for _, withFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("first keyframe %v", withFirst), func(t *testing.T) {
			ts := startHub(t, nil)
			base := snapshot()
			r := rawPublisher(t, ts, "")
			for _, tag := range headers {
				if err := r.publishTag(tag, 0); err != nil {
					t.Fatal(err)
				}
			}
			sent := 0
			if withFirst {
				r.publishTag(key, 0)
				sent++
			}
			for i := range 900 { // 30 s at 30 fps, sent at 10 times real time
				if i%30 == 0 {
					time.Sleep(100 * time.Millisecond)
				}
				if err := r.publishTag(inter[i%len(inter)], uint32(33+i*33)); err != nil {
					t.Fatal(err)
				}
				sent++
			}
			if err := r.command(0, "deleteStream", 4.0, nil, 1.0); err != nil {
				t.Fatal(err)
			}
			b := ts.onlyBroadcast(t)
			waitEnded(t, ts, b.ID, 3*time.Second)
			v := ts.rec.unitsOf(b.ID, KindVideo)
			checkSmoothDTS(t, v, sent)
			keys := 0
			for _, au := range v {
				if au.Key {
					keys++
				}
			}
			if want := map[bool]int{false: 0, true: 1}[withFirst]; keys != want {
				t.Errorf("%d keyframes, want %d", keys, want)
			}
			r.c.Close()
			settle(t, base)
		})
	}
}

// A connection that opens and never finishes its handshake costs a goroutine
// and a few KiB, not go-rtmp's buffers (about 140 KiB before).
func TestHalfOpenConnectionsCostLittle(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.ConnsPerIP = -1; o.MaxConns = -1 })
	base := snapshot()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	for range 500 {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(handshakeC0C1()[:100])
		conns = append(conns, c)
	}
	waitFor(t, "500 pre-publish connections", 5*time.Second, func() bool {
		return strings.Contains(ts.metrics(), "onair_ingest_prepublish_connections 500")
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	perConn := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / 500
	t.Logf("%d bytes of heap and stack per half-open connection", perConn)
	if perConn > 32<<10 {
		t.Errorf("a half-open connection costs %d KiB", perConn>>10)
	}
	for _, c := range conns {
		c.Close()
	}
	settle(t, base)
}
