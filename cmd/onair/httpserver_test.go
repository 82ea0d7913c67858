package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/metricstest"
)

// serveLimited runs an HTTP server with the connection cap and guard on a loopback port.
func serveLimited(t *testing.T, maxConns int, h http.Handler, log *slog.Logger) (addr string, stats *httpStats) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stats = &httpStats{}
	cfg := defaultConfig()
	srv := newHTTPServer(cfg, guard(h, stats, log), log)
	go srv.Serve(newConnLimitListener(ln, maxConns, stats, log))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), stats
}

func rawGet(t *testing.T, c net.Conn, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Past http-max-conns, a connection is answered 503 at once and closed; the
// slot comes back when a connection closes.
func TestConnLimitListener(t *testing.T) {
	var logs syncBuffer // written by the server's goroutines
	log := slog.New(slog.NewTextHandler(&logs, nil))
	addr, stats := serveLimited(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), log)

	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp := rawGet(t, c, "/"); resp.StatusCode != 200 {
			t.Fatalf("connection under the cap answered %d", resp.StatusCode)
		}
		held = append(held, c)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("refused connection %d: read answer: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many connections") {
			t.Fatalf("over the cap: got %d %q %q, want 503 with Retry-After", resp.StatusCode, resp.Header, body)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("refused connection left open")
		}
		c.Close()
	}
	if got := stats.refused.Load(); got != 3 {
		t.Errorf("refused counter %d, want 3", got)
	}
	if n := strings.Count(logs.String(), "connection limit reached"); n != 1 {
		t.Errorf("refusals logged %d times, want once a minute:\n%s", n, logs.String())
	}

	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for stats.open.Load() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %d open", stats.open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := rawGet(t, c, "/"); resp.StatusCode != 200 {
		t.Fatalf("after a connection closed, a new one answered %d", resp.StatusCode)
	}
}

// An upgraded (hijacked) connection keeps its slot until it is closed, and
// still exposes its socket for chat's non-blocking writes.
func TestConnLimitCountsHijackedConns(t *testing.T) {
	hijacked := make(chan net.Conn, 1)
	addr, stats := serveLimited(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		hijacked <- c
	}), slog.New(slog.DiscardHandler))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	hc := <-hijacked
	if _, ok := hc.(syscall.Conn); !ok {
		t.Fatal("hijacked connection does not expose its socket (syscall.Conn)")
	}
	if stats.open.Load() != 1 {
		t.Fatalf("open %d after hijack, want 1", stats.open.Load())
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 503 {
		t.Fatalf("second connection while the hijacked one is open: %v %v, want 503", resp, err)
	}
	c2.Close()
	hc.Close()
	hc.Close() // closing twice gives the slot back once
	if got := stats.open.Load(); got != 0 {
		t.Fatalf("open %d after the hijacked connection closed, want 0", got)
	}
}

// A handler's panic is logged at error level with its stack and counted; the
// server goes on answering.
func TestGuardRecoversPanics(t *testing.T) {
	var logs syncBuffer // written by the server's goroutines
	log := slog.New(slog.NewTextHandler(&logs, nil))
	addr, stats := serveLimited(t, 10, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			var m map[string]int
			m["x"] = 1 // nil map: panics
		}
		io.WriteString(w, "ok")
	}), log)
	_, err := http.Get("http://" + addr + "/boom")
	if err == nil {
		t.Fatal("a panicking handler's connection was answered, want it closed")
	}
	resp, err := http.Get("http://" + addr + "/fine")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("after a panic: %d, nosniff %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
	if stats.panics.Load() != 1 {
		t.Errorf("panics counter %d, want 1", stats.panics.Load())
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "assignment to entry in nil map") || !strings.Contains(l, "httpserver_test.go") {
		t.Errorf("panic not logged at error level with its stack:\n%s", l)
	}
}

// The server's limits come from the configuration.
func TestHTTPServerLimits(t *testing.T) {
	cfg, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), []string{
		"--http-header-timeout", "3s", "--http-read-timeout", "4s", "--http-write-timeout", "50s",
		"--http-idle-timeout", "70s", "--http-max-header-bytes", "8192"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(cfg, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout != 3*time.Second || srv.ReadTimeout != 4*time.Second || srv.WriteTimeout != 50*time.Second ||
		srv.IdleTimeout != 70*time.Second || srv.MaxHeaderBytes != 8192 {
		t.Fatalf("server limits %v %v %v %v %d do not follow the settings", srv.ReadHeaderTimeout, srv.ReadTimeout,
			srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	d := defaultConfig()
	// A slow player: 2 MB at 1 Mbit/s is 16 s, after a blocking wait of three target durations.
	if seg, hold := 16*time.Second, 3*2*time.Second; d.HTTPWriteTimeout < seg+hold {
		t.Errorf("default http-write-timeout %s cuts a slow player's segment (%s) after a blocking wait (%s)", d.HTTPWriteTimeout, seg, hold)
	}
}

func TestHTTPSettingsValidated(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--http-header-timeout", "0s"}, "http-header-timeout: must be positive"},
		{[]string{"--http-write-timeout", "-1s"}, "http-write-timeout: must be positive"},
		{[]string{"--http-idle-timeout", "0s"}, "http-idle-timeout"},
		{[]string{"--http-read-timeout", "2s"}, "http-read-timeout: must be at least http-header-timeout"},
		{[]string{"--hls-segment-duration", "20s", "--hls-part-duration", "1s"}, "http-write-timeout: must be at least 4 × hls-segment-duration (1m20s)"},
		{[]string{"--http-max-header-bytes", "100"}, "http-max-header-bytes"},
		{[]string{"--http-max-header-bytes", "99999999"}, "http-max-header-bytes"},
		{[]string{"--http-max-conns", "0"}, "http-max-conns"},
		{[]string{"--shutdown-drain", "9s"}, "shutdown-drain"},
		{[]string{"--shutdown-drain", "-1s"}, "shutdown-drain"},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		_, err := loadConfig(fs, c.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error containing %q", c.args, err, c.want)
		}
	}
	if _, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), nil, func(string) string { return "" }); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// /readyz: degraded roles keep a node ready; only shutdown makes it unready.
func TestReadiness(t *testing.T) {
	var chatErr error
	rd := &readiness{chat: func() error { return chatErr }}
	get := func() (int, string, string) {
		rec := &recorder{header: http.Header{}}
		rd.ServeHTTP(rec, nil)
		return rec.status, rec.body.String(), metricstest.Text(rd)
	}
	code, body, m := get()
	if code != 200 || !strings.HasPrefix(body, "ready\n") || !strings.Contains(body, "chat: ok") ||
		!strings.Contains(m, `onair_role_degraded{role="chat"} 0`) || !strings.Contains(m, "onair_ready 1") {
		t.Fatalf("healthy: %d %q\n%s", code, body, m)
	}
	chatErr = errors.New("chat: bus: redis unreachable")
	code, body, m = get()
	if code != 200 || !strings.HasPrefix(body, "ready (degraded: chat)") || !strings.Contains(body, "hls: ok") ||
		!strings.Contains(body, "chat: degraded: chat: bus: redis unreachable") || !strings.Contains(m, `onair_role_degraded{role="chat"} 1`) {
		t.Fatalf("redis down: %d %q\n%s", code, body, m)
	}
	rd.draining.Store(true)
	code, body, m = get()
	if code != 503 || !strings.Contains(body, "shutting down") || !strings.Contains(m, "onair_ready 0") {
		t.Fatalf("shutting down: %d %q\n%s", code, body, m)
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.status = code }
