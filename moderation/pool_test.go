package moderation

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

func TestKeyFor(t *testing.T) {
	h264 := func(w, h int) *ingest.VideoTrack {
		return &ingest.VideoTrack{Codec: ingest.CodecH264, Width: w, Height: h}
	}
	cases := []struct {
		name     string
		track    *ingest.VideoTrack
		maxWidth int
		want     decoderKey
	}{
		{"720p", h264(1280, 720), 640, decoderKey{codec: ingest.CodecH264, width: 640, height: 360}},
		{"1080p shares 720p's", h264(1920, 1080), 640, decoderKey{codec: ingest.CodecH264, width: 640, height: 360}},
		{"4:3", h264(640, 480), 640, decoderKey{codec: ingest.CodecH264, width: 640, height: 480}},
		{"small kept", h264(320, 240), 640, decoderKey{codec: ingest.CodecH264, width: 320, height: 240}},
		{"portrait", h264(720, 1280), 640, decoderKey{codec: ingest.CodecH264, width: 640, height: 1138}},
		{"odd sides made even", h264(1281, 721), 640, decoderKey{codec: ingest.CodecH264, width: 640, height: 360}},
		{"odd small", h264(321, 179), 640, decoderKey{codec: ingest.CodecH264, width: 320, height: 180}},
		{"no scaling", h264(1920, 1080), -1, decoderKey{codec: ingest.CodecH264, width: 1920, height: 1080}},
		{"hevc apart", &ingest.VideoTrack{Codec: ingest.CodecHEVC, Width: 1280, Height: 720}, 640, decoderKey{codec: ingest.CodecHEVC, width: 640, height: 360}},
		{"unknown size: own process", h264(0, 0), 640, decoderKey{codec: ingest.CodecH264, broadcast: "b1"}},
		{"absurd size: own process", h264(100000, 720), 640, decoderKey{codec: ingest.CodecH264, broadcast: "b1"}},
	}
	for _, tc := range cases {
		if got := keyFor(tc.track, "b1", tc.maxWidth); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// testPool is a decode pool for tests, closed when the test ends.
func testPool(t *testing.T, ffmpeg string, workers, queue int) (*decodePool, *metrics) {
	t.Helper()
	mt := newMetrics()
	p := newDecodePool(poolOptions{FFmpegPath: ffmpeg, MaxWidth: 640, Workers: workers, QueueMax: queue,
		Timeout: 5 * time.Second, Idle: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, mt)
	t.Cleanup(p.close)
	return p, mt
}

// gate is a take function that blocks its worker until released, then
// reports nothing to decode: it lets a test hold a worker busy without ffmpeg.
type gate struct {
	mu      sync.Mutex
	started chan string // names of the requests taken, in order
	release chan struct{}
}

func newGate() *gate {
	return &gate{started: make(chan string, 16), release: make(chan struct{})}
}

func (g *gate) take(name string) func() ([]byte, bool) {
	return func() ([]byte, bool) {
		g.started <- name
		<-g.release
		return nil, false
	}
}

func (g *gate) next(t *testing.T) string {
	t.Helper()
	select {
	case n := <-g.started:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("no request started")
		return ""
	}
}

// TestPoolQueue: the queue's bound, order, expiry, withdrawal and close, with
// one worker held busy.
func TestPoolQueue(t *testing.T) {
	p, mt := testPool(t, "/nonexistent/ffmpeg", 1, 4)
	g := newGate()
	key := decoderKey{codec: ingest.CodecH264, width: 640, height: 360}
	busy := &decodeRequest{key: key, take: g.take("busy")}
	if err := p.submit(busy); err != nil {
		t.Fatal(err)
	}
	if n := g.next(t); n != "busy" {
		t.Fatalf("started %s", n)
	}
	routine := &decodeRequest{key: key, take: g.take("routine")}
	urgent := &decodeRequest{key: key, urgent: true, take: g.take("urgent")}
	expiring := &decodeRequest{key: key, expires: time.Now().Add(100 * time.Millisecond), take: g.take("expiring")}
	for _, r := range []*decodeRequest{routine, urgent, expiring} {
		if err := p.submit(r); err != nil {
			t.Fatal(err)
		}
	}
	// A caller that gives up withdraws its request.
	ctx, cancel := context.WithCancel(context.Background())
	withdrawn := &decodeRequest{key: key, take: g.take("withdrawn")}
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, werr = p.decode(ctx, withdrawn)
	}()
	for mt.decodeQueued.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	full := &decodeRequest{key: key, take: g.take("full")}
	if err := p.submit(full); !errors.Is(err, errQueueFull) {
		t.Fatalf("fifth request: %v, want %v", err, errQueueFull)
	}
	<-full.done                        // dropped requests are finished too
	time.Sleep(150 * time.Millisecond) // expiring is past its deadline
	cancel()
	wg.Wait()
	if !errors.Is(werr, context.Canceled) {
		t.Errorf("withdrawn: %v", werr)
	}

	g.release <- struct{}{} // busy ends; dispatch drops expiring
	if n := g.next(t); n != "urgent" {
		t.Errorf("after busy, %s started; want urgent before routine", n)
	}
	g.release <- struct{}{}
	if n := g.next(t); n != "routine" {
		t.Errorf("then %s started; want routine", n)
	}
	g.release <- struct{}{}
	for _, r := range []*decodeRequest{busy, urgent, routine} {
		<-r.done
		if !errors.Is(r.err, errNoFrame) {
			t.Errorf("request: %v, want %v", r.err, errNoFrame)
		}
	}
	<-expiring.done
	if !errors.Is(expiring.err, errExpired) {
		t.Errorf("expiring: %v, want %v", expiring.err, errExpired)
	}
	mt.mu.Lock()
	dropped := map[string]uint64{"queue_full": mt.dropped["queue_full"], "expired": mt.dropped["expired"], "canceled": mt.dropped["canceled"]}
	mt.mu.Unlock()
	if dropped["queue_full"] != 1 || dropped["expired"] != 1 || dropped["canceled"] != 1 {
		t.Errorf("dropped %v, want one of each", dropped)
	}

	// Close finishes what still waits.
	busy2 := &decodeRequest{key: key, take: g.take("busy2")}
	p.submit(busy2)
	g.next(t)
	left := &decodeRequest{key: key, take: g.take("left")}
	p.submit(left)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.close() // waits for the running request
	}()
	<-left.done
	g.release <- struct{}{}
	<-closed
	if !errors.Is(left.err, errPoolClosed) {
		t.Errorf("left waiting at close: %v", left.err)
	}
	if err := p.submit(&decodeRequest{key: key, take: g.take("late")}); !errors.Is(err, errPoolClosed) {
		t.Errorf("submit after close: %v", err)
	}
}

// TestPoolNewestSampleWins: a broadcast's request takes the newest sample
// when a worker starts on it, so the samples that arrived while it waited
// are coalesced into one decode.
func TestPoolNewestSampleWins(t *testing.T) {
	p, _ := testPool(t, "/nonexistent/ffmpeg", 1, 8)
	g := newGate()
	key := decoderKey{codec: ingest.CodecH264, width: 640, height: 360}
	p.submit(&decodeRequest{key: key, take: g.take("busy")})
	g.next(t)
	s := NewSampler(time.Second)
	var took []time.Duration
	req := &decodeRequest{key: key, take: func() ([]byte, bool) {
		au, ok := s.TryNext()
		if ok {
			took = append(took, au.Target().DTS)
		}
		return nil, false
	}}
	s.Observe(ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, DTS: 0})
	p.submit(req)
	replaced := 0
	for i := 1; i <= 3; i++ { // while the request waits
		if _, r := s.Observe(ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, DTS: time.Duration(i) * time.Second}); r {
			replaced++
		}
	}
	g.release <- struct{}{}
	<-req.done
	if len(took) != 1 || took[0] != 3*time.Second || replaced != 3 {
		t.Errorf("decoded samples %v (%d replaced), want only the newest (3s)", took, replaced)
	}
}

// TestPoolSharesProcesses: broadcasts of one codec and output size share a
// process; another output size gets a process of its own key, and its
// images have its size (ffmpeg would keep the first size otherwise).
func TestPoolSharesProcesses(t *testing.T) {
	clips := []clip{
		encodeClip(t, "testsrc2=s=1280x720:r=30:d=1", ingest.CodecH264, 30, 30),
		encodeClip(t, "smptebars=s=1920x1080:r=30:d=1", "h264bf0", 30, 30),
		encodeClip(t, "testsrc=s=640x480:r=30:d=1", ingest.CodecH264, 30, 30),
		encodeClip(t, "testsrc2=s=1280x720:r=30:d=1", ingest.CodecH264, 30, 30),
	}
	sizes := [][2]int{{1280, 720}, {1920, 1080}, {640, 480}, {1280, 720}} // as ingest reads them from the SPS
	want := [][2]int{{640, 360}, {640, 360}, {640, 480}, {640, 360}}
	p, mt := testPool(t, "ffmpeg", 1, 8)
	for i, c := range clips {
		c.track.Width, c.track.Height = sizes[i][0], sizes[i][1]
		track, _, err := decoderTrack(&c.track)
		if err != nil {
			t.Fatal(err)
		}
		key := keyFor(&c.track, "b", 640)
		data := annexB(track, Sample{Frames: keyframes(c)[:1]})
		img, err := p.decode(context.Background(), &decodeRequest{key: key, take: func() ([]byte, bool) { return data, true }})
		if err != nil {
			t.Fatalf("clip %d: %v", i, err)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
		if err != nil || cfg.Width != want[i][0] || cfg.Height != want[i][1] {
			t.Errorf("clip %d: %dx%d (%v), want %dx%d", i, cfg.Width, cfg.Height, err, want[i][0], want[i][1])
		}
	}
	// One worker: 640x360, then 640x480 (a switch), then 640x360 again.
	if got := mt.decoderStarts.Load(); got != 3 {
		t.Errorf("%d processes started, want 3", got)
	}
	mt.mu.Lock()
	switches := mt.stops["switch"]
	mt.mu.Unlock()
	if switches != 2 {
		t.Errorf("%d switches, want 2", switches)
	}
	p.close()
	if n := len(ffmpegChildren(t)); n != 0 {
		t.Errorf("%d ffmpeg processes after close", n)
	}
}

// TestPoolRestartBackoff: an ffmpeg that dies at once is not started again
// for every request: after a failure the worker waits before the next start.
func TestPoolRestartBackoff(t *testing.T) {
	p, mt := testPool(t, fakeFFmpeg(t, "exit 1"), 1, 8)
	key := decoderKey{codec: ingest.CodecH264, width: 640, height: 360}
	data := bytes.Repeat([]byte{0, 0, 0, 1, 0x65}, 100)
	start := time.Now()
	var failed int
	for time.Since(start) < time.Second {
		_, err := p.decode(context.Background(), &decodeRequest{key: key, take: func() ([]byte, bool) { return data, true }})
		if err == nil {
			t.Fatal("a dead ffmpeg decoded a frame")
		}
		failed++
		time.Sleep(5 * time.Millisecond)
	}
	starts := mt.decoderStarts.Load()
	t.Logf("%d requests failed in 1 s, %d processes started", failed, starts)
	// 100 ms, 200, 400, 800: at most 5 starts in a second.
	if starts > 5 || failed < 20 {
		t.Errorf("%d starts for %d requests, want at most 5", starts, failed)
	}
	if got := mt.processes.Load(); got != 0 {
		t.Errorf("%d processes counted as running", got)
	}
	mt.mu.Lock()
	t.Logf("stops by reason: %v", mt.stops)
	mt.mu.Unlock()
}

// TestDecodersShared: broadcasts of one kind screened at once share the
// pool's processes: one worker, one process, started once, none left after
// Close.
func TestDecodersShared(t *testing.T) {
	c := encodeClip(t, "testsrc2=s=640x360:r=30:d=3", ingest.CodecH264, 30, 15)
	if n := len(ffmpegChildren(t)); n != 0 {
		t.Skipf("%d ffmpeg children already running", n)
	}
	opts := DefaultOptions()
	opts.Interval = 500 * time.Millisecond
	opts.Decoders = 1
	opts.Screeners = []Screener{allowAll{}}
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	var most int
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			play(t, m, newHub(), c, "ch"+strconv.Itoa(i), 0, func(time.Duration) {
				if i == 0 {
					most = max(most, len(ffmpegChildren(t)))
				}
			})
		}()
	}
	wg.Wait()
	decoded, _ := strconv.Atoi(metricValue(m, "onair_moderation_frames_decoded_total"))
	if starts := metricValue(m, "onair_moderation_decoder_starts_total"); starts != "1" || most != 1 || decoded < 6 {
		t.Errorf("%s processes started, at most %d at once, %d frames decoded; want 1, 1, at least 6", starts, most, decoded)
	}
	m.Close()
	if pids := ffmpegChildren(t); len(pids) != 0 {
		t.Errorf("ffmpeg processes left after Close: %v", pids)
	}
}
