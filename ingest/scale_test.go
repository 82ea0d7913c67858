package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/metricstest"
)

// Measurements of the ingest read path with many real RTMP publishers. They
// are benchmarks and an opt-in test, not timed assertions: the figures go to
// docs/benchmarks.md.

// countingConsumer drains every feed and counts what it gets.
type countingConsumer struct{ units atomic.Int64 }

func (c *countingConsumer) Consume(ctx context.Context, _ *Broadcast, f *Feed) {
	for {
		if _, err := f.Next(ctx); err != nil {
			return
		}
		c.units.Add(1)
	}
}

// scaleHub starts a hub with n channels (ch0..chN-1, key "key-<i>-0123456789") and a counting consumer.
func scaleHub(tb testing.TB, n int) (*Hub, string, *countingConsumer) {
	tb.Helper()
	var chans []ChannelConfig
	for i := range n {
		chans = append(chans, ChannelConfig{Name: fmt.Sprint("ch", i), Keys: []string{fmt.Sprintf("key-%d-0123456789", i)}})
	}
	h, err := NewHub(Options{Channels: chans, ConnsPerIP: -1, MaxConns: -1, Grace: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		tb.Fatal(err)
	}
	cons := &countingConsumer{}
	h.AddConsumer(cons)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Serve(ctx, ln); close(done) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		h.Shutdown(sctx)
		cancel()
		<-done
	})
	return h, ln.Addr().String(), cons
}

// scaleMedia is an FLV of 720p30 H.264 at about 3 Mbit/s with AAC, encoded once per machine.
func scaleMedia(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(os.TempDir(), "onair-scale-720p-3M.flv")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		tb.Skip("ffmpeg not installed")
	}
	tmp := path + ".tmp.flv"
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=10", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
		"-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-maxrate", "3M", "-bufsize", "3M", "-g", "60", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "128k", "-shortest", "-f", "flv", tmp).CombinedOutput()
	if err != nil {
		tb.Fatalf("encode: %v: %s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkReadPath measures what the hub spends per media message read from
// publishers: P publishers push a 720p 3 Mbit/s stream as fast as loopback
// takes it, a consumer drains the feeds. One op is one message received.
func BenchmarkReadPath(b *testing.B) {
	tags := readFLV(b, scaleMedia(b))
	var media []flvTag
	for _, tag := range tags {
		if (tag.typ == msgVideo || tag.typ == msgAudio) && !tag.config() && len(tag.data) > 1 {
			media = append(media, tag)
		}
	}
	for _, pubs := range []int{1, 50, 200} {
		b.Run(fmt.Sprint("publishers=", pubs), func(b *testing.B) {
			h, addr, cons := scaleHub(b, pubs)
			// One minute of the stream, rendered once so that the clients cost
			// only their writes; each publisher sends it over and over.
			r := &rawClient{t: b, chunkSize: 4096}
			var headers, block []byte
			var ends []int // where each message of block ends
			for _, tag := range tags {
				if tag.config() {
					headers = append(headers, r.messageBytes(map[byte]int{msgVideo: 6, msgAudio: 4}[tag.typ], tag.typ, 1, 0, tag.data, false)...)
				}
			}
			for loop := range uint32(6) {
				for _, tag := range media {
					cs := map[byte]int{msgVideo: 6, msgAudio: 4}[tag.typ]
					block = append(block, r.messageBytes(cs, tag.typ, 1, tag.ts+loop*10000, tag.data, false)...)
					ends = append(ends, len(block))
				}
			}
			per := max(b.N/pubs, 1)
			send := func(r *rawClient) {
				r.write(headers)
				for left := per; left > 0; left -= len(ends) {
					if left >= len(ends) {
						r.write(block)
					} else {
						r.write(block[:ends[left-1]])
					}
				}
			}
			b.SetBytes(int64(len(block) / len(ends)))
			clients := make([]*rawClient, pubs)
			for p := range pubs {
				r := dialRaw(b, addr, "").handshake()
				r.setChunkSize(4096)
				r.connectPublish("live", fmt.Sprintf("key-%d-0123456789", p))
				if !r.readUntil("NetStream.Publish.Start", 10*time.Second) {
					b.Fatal("no publish confirmation")
				}
				r.drain()
				clients[p] = r
			}
			want := int64(pubs * per)
			base := cons.units.Load()
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, r := range clients {
				wg.Go(func() { send(r) })
			}
			wg.Wait()
			// Until every unit arrived (a feed may hold a few audio units back
			// until its next video unit), or nothing moved for 300 ms (units dropped).
			last, still := cons.units.Load(), time.Now()
			for n := last; n-base < want-int64(8*pubs) && time.Since(still) < 300*time.Millisecond; n = cons.units.Load() {
				if n != last {
					last, still = n, time.Now()
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(want-(cons.units.Load()-base))/float64(b.N), "lost/op")
			for _, r := range clients {
				r.c.Close()
			}
			_ = h
		})
	}
}

// TestPublishStartScale measures ingest with many real-time publishers: a
// child process (this test binary, TestScalePublishers) connects N publishers
// spread over a period, each replaying a 720p 3 Mbit/s stream in real time,
// and reports how long each waited from its TCP connect to its publish
// confirmation; this process runs the hub alone, so its CPU time (and a
// -cpuprofile) is the hub's. Opt-in: ONAIR_SCALE_PUBLISHERS=200
// (ONAIR_SCALE_SPREAD=10s, ONAIR_SCALE_STREAM=30s).
func TestPublishStartScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ONAIR_SCALE_PUBLISHERS"))
	if n <= 0 || os.Getenv("ONAIR_SCALE_ADDR") != "" {
		t.Skip("set ONAIR_SCALE_PUBLISHERS to run")
	}
	spread := envDuration("ONAIR_SCALE_SPREAD", 10*time.Second)
	stream := envDuration("ONAIR_SCALE_STREAM", 30*time.Second)
	media := scaleMedia(t)
	h, addr, cons := scaleHub(t, n)

	cmd := exec.Command(os.Args[0], "-test.run=^TestScalePublishers$", "-test.v")
	cmd.Env = append(os.Environ(), "ONAIR_SCALE_ADDR="+addr, "ONAIR_SCALE_MEDIA="+media)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	cpu0 := cpuTime()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Steady state: from a second after the last connect to a second before the end.
	time.Sleep(time.Until(start.Add(spread + 2*time.Second)))
	cpu1, u1, t1 := cpuTime(), cons.units.Load(), time.Now()
	time.Sleep(time.Until(start.Add(spread + stream - time.Second)))
	cpu2, u2, t2 := cpuTime(), cons.units.Load(), time.Now()
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	if path := os.Getenv("ONAIR_SCALE_HEAPPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	var pub bytes.Buffer
	metricstest.Write(&pub, h)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("publishers: %v\n%s", err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "publishers over") {
			t.Log(strings.TrimSpace(line))
		}
	}
	var dist []string
	var cum uint64
	for i, le := range histogramBounds {
		if c := h.stats.publishIn.counts[i].Load(); c > 0 {
			cum += c
			dist = append(dist, fmt.Sprintf("%d≤%gs", cum, le))
		}
	}
	t.Logf("hub side, accept to accepted publish (cumulative): %s", strings.Join(dist, " "))
	steady := t2.Sub(t1)
	t.Logf("hub alone, steady state with %d streams: CPU %.3f%% of one core per stream; %.0f units/s; live heap %d KiB per stream (after a GC), process RSS %d MiB; whole run CPU %v",
		n, 100*(cpu2-cpu1).Seconds()/steady.Seconds()/float64(n), float64(u2-u1)/steady.Seconds(),
		ms1.HeapAlloc/uint64(n)>>10, rssMiB(), cpu2-cpu0)
	if !strings.Contains(out.String(), "0 failed") {
		t.Errorf("publishers failed:\n%s", out.String())
	}
	if !strings.Contains(pub.String(), fmt.Sprintf("onair_ingest_active_publishers %d", n)) {
		t.Errorf("not every publisher was live at the end of the steady state:\n%s", pub.String())
	}
}

// TestScalePublishers is the publishing side of TestPublishStartScale, run in a child process.
func TestScalePublishers(t *testing.T) {
	addr := os.Getenv("ONAIR_SCALE_ADDR")
	if addr == "" {
		t.Skip("run by TestPublishStartScale")
	}
	n, _ := strconv.Atoi(os.Getenv("ONAIR_SCALE_PUBLISHERS"))
	spread := envDuration("ONAIR_SCALE_SPREAD", 10*time.Second)
	stream := envDuration("ONAIR_SCALE_STREAM", 30*time.Second)
	tags := readFLV(t, os.Getenv("ONAIR_SCALE_MEDIA"))
	// Every publisher sends the same bytes: render each tag once, with the
	// timestamps of ten loops of the clip.
	r := &rawClient{t: t, chunkSize: 4096}
	type msg struct {
		at   time.Duration
		data []byte
	}
	var msgs []msg
	for loop := range uint32(1 + (spread+stream)/(10*time.Second)) {
		for _, tag := range tags {
			if tag.typ != msgVideo && tag.typ != msgAudio || tag.config() && loop > 0 {
				continue
			}
			cs := map[byte]int{msgVideo: 6, msgAudio: 4}[tag.typ]
			ts := tag.ts + loop*10000
			msgs = append(msgs, msg{time.Duration(ts) * time.Millisecond, r.messageBytes(cs, tag.typ, 1, ts, tag.data, false)})
		}
	}
	var mu sync.Mutex
	var waits []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(spread + stream)
	for i := range n {
		time.Sleep(time.Until(start.Add(spread * time.Duration(i) / time.Duration(n))))
		wg.Go(func() {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			r := &rawClient{t: t, c: c, chunkSize: 128}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(handshakeC0C1())
			s := make([]byte, 3073)
			if _, err := readFull(c, s); err != nil {
				failed.Add(1)
				return
			}
			c.Write(s[1:1537])
			c.SetDeadline(time.Time{})
			r.setChunkSize(4096)
			r.connectPublish("live", fmt.Sprintf("key-%d-0123456789", i))
			if !r.readUntil("NetStream.Publish.Start", 10*time.Second) {
				failed.Add(1)
				return
			}
			mu.Lock()
			waits = append(waits, time.Since(t0))
			mu.Unlock()
			r.drain()
			t1 := time.Now()
			for _, m := range msgs {
				time.Sleep(time.Until(t1.Add(m.at)))
				if time.Now().After(end) || r.write(m.data) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(waits)
	q := func(p float64) time.Duration {
		if len(waits) == 0 {
			return 0
		}
		return waits[min(len(waits)-1, int(p*float64(len(waits))))].Round(100 * time.Microsecond)
	}
	fmt.Printf("%d publishers over %v: %d confirmed, %d failed; connect to publish confirmation p50 %v, p90 %v, p99 %v, max %v\n",
		n, spread, len(waits), failed.Load(), q(.5), q(.9), q(.99), q(1))
}

// rssMiB is the process's resident set size.
func rssMiB() int {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, res int
	fmt.Sscan(string(b), &size, &res)
	return res * os.Getpagesize() >> 20
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
