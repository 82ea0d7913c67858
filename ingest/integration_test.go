package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/metricstest"
)

// recorder is a test Consumer that keeps every access unit of every broadcast.
type recorder struct {
	mu     sync.Mutex
	bcasts []*Broadcast
	units  map[string][]AccessUnit
	ended  map[string]error
	done   chan string
}

func newRecorder() *recorder {
	return &recorder{units: map[string][]AccessUnit{}, ended: map[string]error{}, done: make(chan string, 16)}
}

func (r *recorder) Consume(ctx context.Context, b *Broadcast, f *Feed) {
	r.mu.Lock()
	r.bcasts = append(r.bcasts, b)
	r.mu.Unlock()
	for {
		au, err := f.Next(ctx)
		if err != nil {
			r.mu.Lock()
			r.ended[b.ID] = err
			r.mu.Unlock()
			r.done <- b.ID
			return
		}
		r.mu.Lock()
		r.units[b.ID] = append(r.units[b.ID], au)
		r.mu.Unlock()
	}
}

func (r *recorder) broadcasts() []*Broadcast {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Broadcast(nil), r.bcasts...)
}

func (r *recorder) unitsOf(id string, k Kind) []AccessUnit {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []AccessUnit
	for _, au := range r.units[id] {
		if au.Kind == k {
			out = append(out, au)
		}
	}
	return out
}

// observerLog records observer calls.
type observerLog struct {
	mu     sync.Mutex
	events []string
}

func (o *observerLog) BroadcastStarted(b *Broadcast) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "start "+b.ID)
}

func (o *observerLog) BroadcastEnded(b *Broadcast, r EndReason, detail string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "end "+b.ID+" "+string(r))
}

func (o *observerLog) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.events...)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	hub  *Hub
	rec  *recorder
	obs  *observerLog
	logs *syncBuffer
	addr string
}

const testKey = "s3cr3t-key-0123456789"

func startHub(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	opts := Options{
		Channels: []ChannelConfig{{Name: "demo", Keys: []string{testKey}}, {Name: "other", Keys: []string{"other-key"}}},
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec, obs := newRecorder(), &observerLog{}
	h.AddConsumer(rec)
	h.AddObserver(obs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := h.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("hub log:\n%s", logs.String())
		}
	})
	return &testServer{hub: h, rec: rec, obs: obs, logs: logs, addr: ln.Addr().String()}
}

func (ts *testServer) url(app, key string) string {
	return fmt.Sprintf("rtmp://%s/%s/%s", ts.addr, app, key)
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaErr  error
)

// testMedia encodes (once per test binary) short FLV sources with ffmpeg.
func testMedia(t *testing.T) string {
	t.Helper()
	mediaOnce.Do(func() {
		mediaDir, mediaErr = os.MkdirTemp("", "onair-ingest-media-")
		if mediaErr != nil {
			return
		}
		jobs := map[string][]string{
			// libx264 defaults: B-frames on. 2 s GOP at 30 fps.
			"h264aac.flv": {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4",
				"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4",
				"-c:v", "libx264", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-shortest"},
			"long.flv": {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=12",
				"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=12",
				"-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-shortest"},
			"audio.flv": {"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3", "-c:a", "aac"},
			"speex.flv": {"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-c:a", "libspeex"},
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for name, args := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				full := append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)
				full = append(full, "-f", "flv", filepath.Join(mediaDir, name))
				if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
					mu.Lock()
					mediaErr = fmt.Errorf("encode %s: %v: %s", name, err, out)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return mediaDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mediaDir != "" {
		os.RemoveAll(mediaDir)
	}
	os.Exit(code)
}

// publish runs ffmpeg copying src to url in real time and returns its command, started.
func publish(t *testing.T, src, url string, extra ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re", "-i", src, "-c", "copy"}
	args = append(args, extra...)
	args = append(args, "-f", "flv", url)
	cmd := exec.Command("ffmpeg", args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitEnded(t *testing.T, ts *testServer, id string, d time.Duration) {
	t.Helper()
	waitFor(t, "broadcast "+id+" to end", d, func() bool {
		ts.rec.mu.Lock()
		defer ts.rec.mu.Unlock()
		_, ok := ts.rec.ended[id]
		return ok
	})
}

type probePacket struct{ dts, pts time.Duration }

// probe reads the (DTS, PTS) of every packet of one stream kind with ffprobe.
func probe(t *testing.T, src, stream string) []probePacket {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", stream,
		"-show_entries", "packet=dts_time,pts_time", "-of", "json", src).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct {
		Packets []struct {
			DTS string `json:"dts_time"`
			PTS string `json:"pts_time"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	parse := func(s string) time.Duration {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("ffprobe time %q: %v", s, err)
		}
		return time.Duration(f*1000+0.5) * time.Millisecond
	}
	var pk []probePacket
	for _, p := range res.Packets {
		pk = append(pk, probePacket{parse(p.DTS), parse(p.PTS)})
	}
	return pk
}

func TestPublishH264AAC(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	dir := testMedia(t)
	ts := startHub(t, nil)
	src := filepath.Join(dir, "h264aac.flv")
	cmd, out := publish(t, src, ts.url("live", testKey))
	waitFor(t, "broadcast start", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	st, ok := ts.hub.Channel("demo")
	if !ok || !st.Live || st.Video == nil || st.Video.Width != 320 || st.Video.Height != 240 || st.Audio == nil || st.Audio.SampleRate != 44100 {
		t.Errorf("status while live: %+v video=%+v audio=%+v", st, st.Video, st.Audio)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out.String())
	}
	b := ts.rec.broadcasts()[0]
	// ffmpeg unpublishes cleanly on exit: the broadcast ends at once.
	waitEnded(t, ts, b.ID, 2*time.Second)
	if b.Tracks.Video == nil || b.Tracks.Video.Codec != CodecH264 || b.Tracks.Audio == nil || b.Tracks.Audio.Codec != CodecAAC {
		t.Fatalf("tracks %s", b.Tracks)
	}
	if st, _ := ts.hub.Channel("demo"); st.Live {
		t.Errorf("still live after stop: %+v", st)
	}

	want := probe(t, src, "v:0")
	got := ts.rec.unitsOf(b.ID, KindVideo)
	if len(got) != len(want) {
		t.Fatalf("got %d video units, ffprobe reports %d packets", len(got), len(want))
	}
	if !got[0].Key {
		t.Errorf("first video unit is not a keyframe")
	}
	off := want[0].dts - got[0].DTS
	bframes := 0
	for i := range want {
		g := got[i]
		if g.DTS+off != want[i].dts || g.PTS+off != want[i].pts {
			t.Fatalf("video unit %d: (dts %v, pts %v)+%v, ffprobe (%v, %v)", i, g.DTS, g.PTS, off, want[i].dts, want[i].pts)
		}
		if i > 0 && g.PTS < got[i-1].PTS {
			bframes++
		}
		if i > 0 && g.DTS < got[i-1].DTS {
			t.Fatalf("DTS went backwards at %d", i)
		}
	}
	if bframes == 0 {
		t.Errorf("no reordered frames: the test source should have B-frames")
	}
	if got[0].DTS > 100*time.Millisecond || got[0].DTS < 0 {
		t.Errorf("first DTS %v, want near 0", got[0].DTS)
	}
	wantA := probe(t, src, "a:0")
	gotA := ts.rec.unitsOf(b.ID, KindAudio)
	if len(gotA) != len(wantA) {
		t.Fatalf("got %d audio units, ffprobe reports %d", len(gotA), len(wantA))
	}
	for i := range wantA {
		if gotA[i].DTS+off != wantA[i].dts {
			t.Fatalf("audio unit %d: dts %v+%v, ffprobe %v", i, gotA[i].DTS, off, wantA[i].dts)
		}
	}
	if ev := ts.obs.list(); len(ev) != 2 || ev[0] != "start "+b.ID || ev[1] != "end "+b.ID+" stopped" {
		t.Errorf("observer events %v", ev)
	}
	if strings.Contains(ts.logs.String(), testKey) {
		t.Errorf("log contains the stream key")
	}
	var m bytes.Buffer
	if err := metricstest.Write(&m, ts.hub); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.String(), `onair_ingest_broadcasts_ended_total{reason="stopped"} 1`) {
		t.Errorf("metrics:\n%s", m.String())
	}
}

func TestPublishAudioOnly(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	ts := startHub(t, nil)
	cmd, out := publish(t, filepath.Join(dir, "audio.flv"), ts.url("live", testKey))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out.String())
	}
	waitFor(t, "broadcast", 2*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	waitEnded(t, ts, b.ID, 2*time.Second)
	if b.Tracks.Video != nil || b.Tracks.Audio == nil {
		t.Fatalf("tracks %s", b.Tracks)
	}
	if n := len(ts.rec.unitsOf(b.ID, KindAudio)); n < 100 {
		t.Errorf("only %d audio units", n)
	}
}

func TestRefusals(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	src := filepath.Join(dir, "h264aac.flv")
	ts := startHub(t, nil)

	t.Run("wrong key", func(t *testing.T) {
		cmd, out := publish(t, src, ts.url("live", "not-the-key"))
		if err := cmd.Wait(); err == nil {
			t.Fatalf("ffmpeg succeeded with a wrong key")
		}
		if !strings.Contains(out.String(), "invalid stream key") {
			t.Errorf("ffmpeg output lacks our status: %s", out.String())
		}
		if strings.Contains(ts.logs.String(), "not-the-key") {
			t.Errorf("log contains the key")
		}
		if !strings.Contains(ts.logs.String(), keyHash("not-the-key")) {
			t.Errorf("log lacks the key hash")
		}
	})
	t.Run("unknown app", func(t *testing.T) {
		cmd, out := publish(t, src, ts.url("nope", testKey))
		if err := cmd.Wait(); err == nil {
			t.Fatalf("ffmpeg succeeded on an unknown app")
		}
		_ = out
	})
	t.Run("unsupported codec", func(t *testing.T) {
		cmd, _ := publish(t, filepath.Join(dir, "speex.flv"), ts.url("live", testKey))
		_ = cmd.Wait()
		waitFor(t, "log line", 2*time.Second, func() bool { return strings.Contains(ts.logs.String(), "Speex") })
	})
	if n := len(ts.rec.broadcasts()); n != 0 {
		t.Fatalf("%d broadcasts after refused publishes", n)
	}
	t.Run("second publisher", func(t *testing.T) {
		first, _ := publish(t, src, ts.url("live", testKey))
		waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
		second, out := publish(t, src, ts.url("live", testKey))
		if err := second.Wait(); err == nil {
			t.Fatalf("second publisher succeeded")
		}
		if !strings.Contains(out.String(), "already being published") {
			t.Errorf("ffmpeg output lacks our status: %s", out.String())
		}
		_ = first.Process.Kill()
		_ = first.Wait()
	})
	var m bytes.Buffer
	_ = metricstest.Write(&m, ts.hub)
	for _, r := range []string{"bad_key", "unknown_app", "in_use", "unsupported_codec"} {
		if !strings.Contains(m.String(), fmt.Sprintf(`onair_ingest_refused_publishes_total{reason=%q} 1`, r)) {
			t.Errorf("metrics lack refusal %s:\n%s", r, m.String())
		}
	}
}

func TestTakeDownAndBan(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	src := filepath.Join(dir, "long.flv")
	ts := startHub(t, nil)
	cmd, _ := publish(t, src, ts.url("live", testKey))
	waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	if err := ts.hub.TakeDown("demo", "test violation", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, ts, b.ID, time.Second)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("publisher not disconnected")
	}
	st, _ := ts.hub.Channel("demo")
	if st.Live || st.BanReason != "test violation" || st.BannedUntil.IsZero() {
		t.Errorf("status after takedown %+v", st)
	}
	again, out := publish(t, src, ts.url("live", testKey))
	if err := again.Wait(); err == nil {
		t.Fatalf("republish during ban succeeded")
	}
	if !strings.Contains(out.String(), "banned") {
		t.Errorf("ffmpeg output lacks the ban: %s", out.String())
	}
	if ev := ts.obs.list(); len(ev) != 2 || ev[1] != "end "+b.ID+" taken_down" {
		t.Errorf("events %v", ev)
	}
	if err := ts.hub.Unban("demo"); err != nil {
		t.Fatal(err)
	}
	ok, _ := publish(t, filepath.Join(dir, "audio.flv"), ts.url("live", testKey))
	if err := ok.Wait(); err != nil {
		t.Fatalf("publish after unban: %v", err)
	}
}

func TestReconnectWithinGrace(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	src := filepath.Join(dir, "long.flv")
	ts := startHub(t, func(o *Options) { o.Grace = 5 * time.Second })
	first, _ := publish(t, src, ts.url("live", testKey))
	waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	waitFor(t, "some media", 5*time.Second, func() bool { return len(ts.rec.unitsOf(b.ID, KindVideo)) > 45 })
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	waitFor(t, "publisher gone", 2*time.Second, func() bool {
		st, _ := ts.hub.Channel("demo")
		return !st.PublisherConnected && st.Live
	})
	before := len(ts.rec.unitsOf(b.ID, KindVideo))
	second, out := publish(t, src, ts.url("live", testKey))
	if err := second.Wait(); err != nil {
		t.Fatalf("second publish: %v: %s", err, out.String())
	}
	requireContinued(t, ts, b, before, "reconnect")
	a := ts.rec.unitsOf(b.ID, KindAudio)
	for i := 1; i < len(a); i++ {
		if a[i].DTS < a[i-1].DTS {
			t.Fatalf("audio DTS backwards at %d", i)
		}
	}
	if ev := ts.obs.list(); len(ev) != 2 {
		t.Errorf("events %v", ev)
	}
}

// requireContinued checks that b, once ended, was the only broadcast and that a
// second publisher (after event) added at least 10 s of video with rising DTS,
// its first frame, a keyframe, marked as a discontinuity.
func requireContinued(t *testing.T, ts *testServer, b *Broadcast, before int, event string) {
	t.Helper()
	waitEnded(t, ts, b.ID, 2*time.Second)
	if n := len(ts.rec.broadcasts()); n != 1 {
		t.Fatalf("%d broadcasts, want one continued across the %s", n, event)
	}
	v := ts.rec.unitsOf(b.ID, KindVideo)
	if len(v) < before+300 {
		t.Fatalf("%d video units after the %s, had %d before", len(v), event, before)
	}
	var marked []int
	for i := 1; i < len(v); i++ {
		if v[i].DTS <= v[i-1].DTS {
			t.Fatalf("DTS not increasing at %d: %v then %v", i, v[i-1].DTS, v[i].DTS)
		}
		if v[i].Discontinuity {
			marked = append(marked, i)
		}
	}
	if len(marked) != 1 || marked[0] > before || !v[marked[0]].Key {
		t.Errorf("video frames marked as a discontinuity: %v (of %d, %d before the %s), want the second publisher's first keyframe only", marked, len(v), before, event)
	}
	for _, a := range ts.rec.unitsOf(b.ID, KindAudio) {
		if a.Discontinuity {
			t.Errorf("an audio frame at %v marked as a discontinuity; video leads", a.DTS)
			break
		}
	}
}

func TestGraceTimeout(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	ts := startHub(t, func(o *Options) { o.Grace = 500 * time.Millisecond })
	cmd, _ := publish(t, filepath.Join(dir, "long.flv"), ts.url("live", testKey))
	waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	waitEnded(t, ts, b.ID, 3*time.Second)
	if ev := ts.obs.list(); len(ev) != 2 || ev[1] != "end "+b.ID+" timeout" {
		t.Errorf("events %v", ev)
	}
}

// A ban lapses by itself: once its time is up the channel may publish again.
func TestBanExpires(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	ts := startHub(t, nil)
	if err := ts.hub.TakeDown("demo", "short ban", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	refused, _ := publish(t, filepath.Join(dir, "audio.flv"), ts.url("live", testKey))
	if err := refused.Wait(); err == nil {
		t.Fatal("publish during the ban succeeded")
	}
	st, _ := ts.hub.Channel("demo")
	time.Sleep(time.Until(st.BannedUntil) + 100*time.Millisecond)
	ok, out := publish(t, filepath.Join(dir, "audio.flv"), ts.url("live", testKey))
	if err := ok.Wait(); err != nil {
		t.Fatalf("publish after the ban expired: %v\n%s", err, out.String())
	}
	if n := len(ts.rec.broadcasts()); n != 1 {
		t.Errorf("%d broadcasts after the ban expired, want 1", n)
	}
}

// With Takeover, a second publisher replaces the live one: the first is cut off
// and the broadcast continues with the newcomer's media, timestamps still rising.
func TestTakeover(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := testMedia(t)
	src := filepath.Join(dir, "long.flv")
	ts := startHub(t, func(o *Options) { o.Takeover = true })
	first, _ := publish(t, src, ts.url("live", testKey))
	waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	waitFor(t, "some media", 5*time.Second, func() bool { return len(ts.rec.unitsOf(b.ID, KindVideo)) > 30 })

	second, out := publish(t, src, ts.url("live", testKey))
	kicked := make(chan error, 1)
	go func() { kicked <- first.Wait() }()
	select {
	case <-kicked:
	case <-time.After(5 * time.Second):
		t.Fatal("the first publisher was not cut off")
	}
	before := len(ts.rec.unitsOf(b.ID, KindVideo))
	if err := second.Wait(); err != nil {
		t.Fatalf("second publisher: %v: %s", err, out.String())
	}
	requireContinued(t, ts, b, before, "takeover")
	if !strings.Contains(ts.logs.String(), "publisher taken over") {
		t.Error("the takeover was not logged")
	}
}

// A connection flood from one address is cut at the per-IP limit; connections
// under it are untouched and a freed slot can be used again.
func TestConnectionsPerIP(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.ConnsPerIP = 3 })
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedSoon reports whether the server closes c within d.
	closedSoon := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	var open []net.Conn
	for range 3 {
		open = append(open, dial())
	}
	waitFor(t, "three tracked connections", 2*time.Second, func() bool {
		ts.hub.mu.Lock()
		defer ts.hub.mu.Unlock()
		return len(ts.hub.conns) == 3
	})
	if !closedSoon(dial(), time.Second) {
		t.Fatal("a fourth connection from one address was not refused")
	}
	for _, c := range open {
		if closedSoon(c, 100*time.Millisecond) {
			t.Fatal("a connection under the limit was closed")
		}
	}
	open[0].Close()
	waitFor(t, "slot freed", 2*time.Second, func() bool {
		ts.hub.mu.Lock()
		defer ts.hub.mu.Unlock()
		return len(ts.hub.conns) == 2
	})
	if closedSoon(dial(), 300*time.Millisecond) {
		t.Fatal("a connection after one closed was refused")
	}
	if !strings.Contains(ts.logs.String(), "too many from one address") {
		t.Error("the refusal was not logged")
	}
}

func (s *syncBuffer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
