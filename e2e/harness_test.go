// Package e2e holds onair's end-to-end tests: the real onair binary, published to
// with real ffmpeg, read with ffprobe, hls.js in Chromium, nginx and Redis.
// They are skipped with -short.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// onairBin is the binary built once for the whole run.
	onairBin string
	// sharedTempDir holds files several tests use (encoded sources).
	sharedTempDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped with -short")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "onair-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	onairBin = filepath.Join(dir, "onair")
	sharedTempDir = filepath.Join(dir, "shared")
	os.Mkdir(sharedTempDir, 0o755)
	args := []string{"build", "-o", onairBin}
	if os.Getenv("ONAIR_E2E_RACE") != "" {
		// Off by default: the race detector slows the media path several times over,
		// which the latency checks would feel. The unit tests always run with -race.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/onair")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build onair:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Server is one running onair process.
type Server struct {
	RTMP    string // rtmp://127.0.0.1:port/live
	HTTP    string // http://127.0.0.1:port
	DataDir string
	Key     string // the stream key of channel "main"

	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
}

// Logs returns everything the server logged so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// Stdout returns what the server printed for its user (the banner).
func (s *Server) Stdout() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// needTools skips the test when a program it needs is missing.
func needTools(t testing.TB, names ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (scripts/test installs it)", n)
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartServer runs onair serve with channel "main" (key Server.Key) plus args,
// waits until it answers /healthz, and stops it with SIGTERM when the test ends.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	needTools(t)
	rtmpPort, httpPort := freePort(t), freePort(t)
	s := &Server{
		RTMP:    fmt.Sprintf("rtmp://127.0.0.1:%d/live", rtmpPort),
		HTTP:    fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		DataDir: t.TempDir(),
		Key:     "test-key-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		done:    make(chan struct{}),
	}
	full := []string{"serve",
		"--rtmp-addr", fmt.Sprintf("127.0.0.1:%d", rtmpPort),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--data-dir", s.DataDir,
		"--log-level", "debug",
	}
	if !hasFlag(args, "--channel") {
		full = append(full, "--channel", "main:"+s.Key)
	}
	full = append(full, args...)
	s.cmd = exec.Command(onairBin, full...)
	s.cmd.Stdout = lockedWriter{&s.mu, &s.stdout}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.logs}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start onair: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("onair log:\n%s", tail(s.Logs(), 8000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.HTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("onair exited at start:\n%s", s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("onair did not answer /healthz in 20 s:\n%s", s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("onair did not stop within 15 s of SIGTERM")
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Source describes a synthetic stream made by ffmpeg's lavfi sources.
type Source struct {
	Width, Height, FPS int
	Seconds            float64
	Video, Audio       bool
	Pattern            string   // lavfi video source, default testsrc2
	Bitrate            string   // video bitrate, e.g. "3M"; default libx264's own
	GOP                int      // keyframe interval in frames; default FPS (1 s)
	Extra              []string // more output options, before the format
}

func (s Source) withDefaults() Source {
	if s.Width == 0 {
		s.Width, s.Height = 640, 360
	}
	if s.FPS == 0 {
		s.FPS = 30
	}
	if s.Seconds == 0 {
		s.Seconds = 5
	}
	if !s.Video && !s.Audio {
		s.Video, s.Audio = true, true
	}
	if s.Pattern == "" {
		s.Pattern = "testsrc2"
	}
	if s.GOP == 0 {
		s.GOP = s.FPS
	}
	return s
}

// EncodeFLV writes the source to an FLV file, so a test knows exactly what it publishes.
func EncodeFLV(t testing.TB, src Source) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "source.flv")
	encodeFLV(t, out, src)
	return out
}

func encodeFLV(t testing.TB, out string, src Source) {
	t.Helper()
	src = src.withDefaults()
	args := []string{"-hide_banner", "-loglevel", "error", "-y"}
	dur := fmt.Sprint(src.Seconds)
	if src.Video {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("%s=size=%dx%d:rate=%d:duration=%s", src.Pattern, src.Width, src.Height, src.FPS, dur))
	}
	if src.Audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration="+dur)
	}
	if src.Video {
		// libx264's defaults (B-frames on), as OBS uses them; only the GOP is set.
		args = append(args, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", fmt.Sprint(src.GOP))
		if src.Bitrate != "" {
			args = append(args, "-b:v", src.Bitrate, "-maxrate", src.Bitrate, "-bufsize", src.Bitrate)
		}
	}
	if src.Audio {
		args = append(args, "-c:a", "aac", "-b:a", "128k")
	}
	args = append(args, src.Extra...)
	args = append(args, "-f", "flv", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("encode source: %v\n%s", err, b)
	}
}

// Publisher is a running ffmpeg publishing a file in real time.
type Publisher struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
	err  error
}

// Publish starts ffmpeg sending file to url at its own pace (-re), copying codecs.
// With loop, it repeats the file until stopped.
func Publish(t testing.TB, file, url string, loop bool) *Publisher {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "warning", "-re"}
	if loop {
		args = append(args, "-stream_loop", "-1")
	}
	args = append(args, "-i", file, "-c", "copy", "-f", "flv", url)
	p := &Publisher{cmd: exec.Command("ffmpeg", args...), done: make(chan struct{})}
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.out}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Kill() })
	return p
}

// Wait waits up to timeout for ffmpeg to exit; it reports whether it did, and its error.
func (p *Publisher) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Stop asks ffmpeg to finish cleanly (it unpublishes), like OBS's Stop Streaming.
func (p *Publisher) Stop() {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// Kill drops the connection without unpublishing, like a network failure.
func (p *Publisher) Kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Output is what ffmpeg printed.
func (p *Publisher) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitHTTP polls url until it answers 200 or the timeout passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not answer 200 within %s", url, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Get fetches url and returns the response with its body read.
func Get(t testing.TB, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp, body
}
