package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsServer is onair running alone in a network namespace of its own whose
// TCP send buffers are capped, as on a real network path: on the host's
// loopback the kernel would buffer a whole segment and hide how long the
// server's writes take.
type netnsServer struct {
	HTTP, RTMP string // addresses inside the namespace
	ns         string // /proc/PID/ns/net
	cmd        *exec.Cmd
	logs       bytes.Buffer
}

func startNetnsServer(t *testing.T, args ...string) *netnsServer {
	t.Helper()
	needTools(t, "unshare", "nsenter", "ip")
	if os.Getuid() != 0 {
		t.Skip("network namespaces need root")
	}
	s := &netnsServer{HTTP: "127.0.0.1:8080", RTMP: "rtmp://127.0.0.1:1935/live"}
	script := `ip link set lo up && echo "4096 16384 65536" > /proc/sys/net/ipv4/tcp_wmem && exec "$0" "$@"`
	full := append([]string{"-n", "sh", "-c", script, onairBin, "serve", "--rtmp-addr", "127.0.0.1:1935",
		"--http-addr", s.HTTP, "--data-dir", t.TempDir(), "--channel", "main:netns-test-key"}, args...)
	s.cmd = exec.Command("unshare", full...)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("onair log:\n%s", tail(s.logs.String(), 4000))
		}
	})
	s.ns = fmt.Sprintf("/proc/%d/ns/net", s.cmd.Process.Pid)
	for i := 0; ; i++ {
		if c, err := s.dial(); err == nil {
			c.Close()
			return s
		}
		if i == 200 {
			t.Fatalf("onair in its namespace did not listen:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial connects to the server's HTTP port from inside its namespace.
func (s *netnsServer) dial() (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread switches namespace and is never unlocked, so it ends with
		// this goroutine instead of serving others in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open(s.ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			// A small receive window: the player's side of a slow link.
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
			return nil
		}}
		c, err := d.Dial("tcp", s.HTTP)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// client is an HTTP client whose connections are made inside the namespace.
func (s *netnsServer) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return s.dial() },
		DisableKeepAlives: true,
	}, Timeout: 10 * time.Second}
}

// publish runs ffmpeg inside the namespace, looping file.
func (s *netnsServer) publish(t *testing.T, file string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+s.ns, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
		"-i", file, "-c", "copy", "-f", "flv", s.RTMP+"/netns-test-key")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// slowRead fetches path at rate bytes per second and reports how much of the
// body arrived and in how long; it stops early after limit.
func (s *netnsServer) slowRead(t *testing.T, path string, rate int, limit time.Duration) (got, want int64, took time.Duration) {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: onair\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d", path, resp.StatusCode)
	}
	start := time.Now()
	chunk := make([]byte, rate/10)
	for time.Since(start) < limit {
		next := start.Add(time.Duration(got) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(next))
		n, err := io.ReadFull(resp.Body, chunk)
		got += int64(n)
		if err != nil {
			break
		}
	}
	return got, resp.ContentLength, time.Since(start)
}

// newestSegment waits for the channel's media playlist and returns its newest segment's path.
func (s *netnsServer) newestSegment(t *testing.T) string {
	t.Helper()
	hc := s.client()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		resp, err := hc.Get("http://onair/hls/main/index.m3u8")
		if err != nil {
			continue
		}
		mv, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		media := uriLine.FindString(string(mv))
		if resp.StatusCode != 200 || media == "" {
			continue
		}
		resp, err = hc.Get("http://onair/hls/main/" + media)
		if err != nil {
			continue
		}
		pl, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if segs := uriLine.FindAllString(string(pl), -1); len(segs) >= 2 {
			return "/hls/main/" + segs[len(segs)-1]
		}
	}
	t.Fatalf("no segment within 30 s:\n%s", s.logs.String())
	return ""
}

// TestSlowPlayerGetsWholeSegment: with the default limits, a player on a
// 1 Mbit/s link gets a whole 2 MB segment (16 s), although the server's
// writes block on the link; a write timeout shorter than that would cut it,
// which the second case shows.
func TestSlowPlayerGetsWholeSegment(t *testing.T) {
	needTools(t, "ffmpeg")
	// 8 Mbit/s of noise in 2 s GOPs: segments of about 2 MB.
	file := sharedSource(t, Source{Width: 640, Height: 360, FPS: 30, Seconds: 8, Video: true, GOP: 60,
		Pattern: "testsrc2", Bitrate: "8M", Extra: []string{"-vf", "noise=alls=60:allf=t+u", "-preset", "ultrafast"}})
	const rate = 125000 // 1 Mbit/s
	for _, c := range []struct {
		name    string
		args    []string
		wantCut bool
	}{
		{"defaults", nil, false},
		{"write timeout 8s", []string{"--http-write-timeout", "8s"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startNetnsServer(t, append([]string{"--hls-segment-duration", "2s"}, c.args...)...)
			s.publish(t, file)
			seg := s.newestSegment(t)
			got, want, took := s.slowRead(t, seg, rate, 40*time.Second)
			t.Logf("%s: %d of %d bytes at 1 Mbit/s in %s", seg, got, want, took.Round(time.Millisecond))
			if want < 1500000 {
				t.Fatalf("segment is %d bytes, want about 2 MB for the test to mean anything", want)
			}
			if cut := got < want; cut != c.wantCut {
				t.Errorf("cut %v after %d of %d bytes in %s, want cut %v", cut, got, want, took, c.wantCut)
			}
		})
	}
}

// TestChatOutlivesHTTPTimeouts: WebSocket chat is not bound by the HTTP
// server's read, write and idle timeouts; a chat connection stays open,
// idle or busy, well past all of them.
func TestChatOutlivesHTTPTimeouts(t *testing.T) {
	s := StartServer(t, "--http-header-timeout", "1s", "--http-read-timeout", "1s", "--http-write-timeout", "4s", "--http-idle-timeout", "1s")
	talker := mustOpenChat(t, s.HTTP, "main", "alice", "")
	listener := mustOpenChat(t, s.HTTP, "main", "", "") // a reader that never sends
	for i, wait := range []time.Duration{0, 5 * time.Second, 4 * time.Second} {
		time.Sleep(wait)
		text := fmt.Sprintf("message-%d", i)
		talker.say(t, text)
		listener.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == text })
	}
	if !talker.open() || !listener.open() {
		t.Fatalf("chat connections closed past the HTTP timeouts: %v / %v", talker.ended(), listener.ended())
	}
}

// TestHTTPConnectionCap: past http-max-conns (chat connections included)
// a connection is answered 503 at once; others work again once some close.
func TestHTTPConnectionCap(t *testing.T) {
	s := StartServer(t, "--http-max-conns", "40", "--chat-conns-per-ip", "100")
	addr := strings.TrimPrefix(s.HTTP, "http://")
	var chats []*chatClient
	for i := range 10 {
		chats = append(chats, mustOpenChat(t, s.HTTP, "main", fmt.Sprintf("v%d", i), ""))
	}
	// Open connections that send nothing until one is refused.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			held = append(held, c) // accepted: the server waits for a request
			if len(held) > 40 {
				t.Fatal("more than http-max-conns connections accepted")
			}
			continue
		}
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("connection over the cap: %v %v, want 503", resp, err)
		}
		c.Close()
		break
	}
	// The test's own keep-alive connection from start-up may hold a slot.
	if n := 10 + len(held); n < 39 || n > 40 {
		t.Errorf("refused after %d connections (10 chat), want http-max-conns (40)", n)
	}
	for _, c := range chats {
		if !c.open() {
			t.Fatal("a chat connection under the cap was closed")
		}
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	WaitHTTP(t, s.HTTP+"/healthz", 5*time.Second)
	if v := s.metric(t, "onair_http_connections_refused_total"); v < 1 {
		t.Errorf("onair_http_connections_refused_total = %v", v)
	}
	if v := s.metric(t, "onair_http_connections"); v < 10 || v > 13 {
		t.Errorf("onair_http_connections = %v with 10 chat connections open", v)
	}
}

// TestChatOutlivesPings: a chat connection, idle or busy, stays open past the
// server's first ping (30 s) and the write timeout after it (10 s). A write
// deadline left on the socket by one write must not cut later ones.
func TestChatOutlivesPings(t *testing.T) {
	s := StartServer(t)
	talker := mustOpenChat(t, s.HTTP, "main", "alice", "")
	idle := mustOpenChat(t, s.HTTP, "main", "", "")
	start := time.Now()
	for i := 0; time.Since(start) < 48*time.Second; i++ {
		time.Sleep(4 * time.Second)
		if !talker.open() || !idle.open() {
			t.Fatalf("chat connections cut %s after they opened: %v / %v", time.Since(start).Round(time.Second), talker.ended(), idle.ended())
		}
		if i%3 == 0 {
			text := fmt.Sprintf("still here %d", i)
			talker.say(t, text)
			idle.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == text })
		}
	}
}
