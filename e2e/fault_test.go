package e2e

// The fault suite's cross-cutting cases: each starts the real binary, does
// one kind of harm, checks the behaviour onair must show while it lasts, and
// then that goroutines, file descriptors, heap, resident memory and child
// processes return to their baseline.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// logLinesAtInfo counts the log lines at info level or above (the default level).
func logLinesAtInfo(logs string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=INFO") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			n++
		}
	}
	return n
}

// liveStream publishes a looping test source to s's channel main and waits for its playlist.
func liveStream(t *testing.T, s *Server) *Publisher {
	t.Helper()
	file := sharedSource(t, Source{Width: 320, Height: 240, FPS: 30, Seconds: 6})
	pub := Publish(t, file, s.RTMP+"/"+s.Key, true)
	WaitHTTP(t, s.HTTP+"/hls/main/index.m3u8", 20*time.Second)
	return pub
}

// playlistAdvances checks that the channel's media playlist gains a segment within timeout.
func playlistAdvances(t *testing.T, base string, timeout time.Duration) {
	t.Helper()
	url := mediaPlaylistURL(t, base, "main")
	_, first := Get(t, url)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		resp, now := Get(t, url)
		if resp.StatusCode == 200 && lastSegment(now) != lastSegment(first) && lastSegment(now) != "" {
			return
		}
	}
	t.Fatalf("playlist did not advance within %s:\n%s", timeout, first)
}

func lastSegment(pl []byte) string {
	segs := uriLine.FindAllString(string(pl), -1)
	if len(segs) == 0 {
		return ""
	}
	return segs[len(segs)-1]
}

// slowClient opens a connection that sends a request's start and then one
// header byte every interval, never finishing; closed reports when the server
// hung up.
func slowClient(addr string, interval time.Duration, stop <-chan struct{}) (closed <-chan time.Duration, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: onair\r\nX-Slow: ")
		// A reader sees the server's close (EOF or reset) as soon as it happens.
		go func() {
			io.Copy(io.Discard, c)
			done <- time.Since(start)
		}()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	return done, nil
}

// TestFaultSlowloris: clients that trickle headers, trickle a body or sit idle
// on a keep-alive connection are cut at the configured limits while other
// clients are served at once; nothing stays behind.
func TestFaultSlowloris(t *testing.T) {
	s := StartDebugServer(t, "--http-header-timeout", "2s", "--http-read-timeout", "3s", "--http-idle-timeout", "2s")
	addr := strings.TrimPrefix(s.HTTP, "http://")
	time.Sleep(time.Second)
	base := s.sample(t)

	stop := make(chan struct{})
	defer close(stop)
	const slow = 300
	var closed []<-chan time.Duration
	for range slow {
		ch, err := slowClient(addr, 400*time.Millisecond, stop)
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, ch)
	}
	// Idle keep-alive connections, each after one answered request.
	const idle = 100
	idleClosed := make(chan time.Duration, idle)
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: onair\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		start := time.Now()
		go func() {
			io.Copy(io.Discard, br)
			idleClosed <- time.Since(start)
		}()
	}
	// A body sent one byte a second.
	body, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	bodyStart := time.Now()
	io.WriteString(body, "POST /api/v1/channels/main/takedown HTTP/1.1\r\nHost: onair\r\nContent-Length: 1000\r\nAuthorization: Bearer x\r\n\r\n")
	bodyClosed := make(chan time.Duration, 1)
	go func() {
		for {
			body.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := body.Write([]byte("{")); err != nil {
				break
			}
			time.Sleep(time.Second)
		}
	}()
	go func() { io.Copy(io.Discard, body); bodyClosed <- time.Since(bodyStart) }()

	// Meanwhile others are served at once.
	for i := range 10 {
		start := time.Now()
		resp, _ := Get(t, s.HTTP+"/healthz")
		if resp.StatusCode != 200 || time.Since(start) > time.Second {
			t.Errorf("healthy request %d under slowloris: %d in %s", i, resp.StatusCode, time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}

	var worst time.Duration
	for i, ch := range closed {
		select {
		case d := <-ch:
			worst = max(worst, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("slowloris connection %d still open 10 s in (http-header-timeout 2s)", i)
		}
	}
	if worst > 4*time.Second {
		t.Errorf("slowest slowloris connection cut after %s, want about http-header-timeout (2s)", worst)
	}
	var idleWorst time.Duration
	for range idle {
		select {
		case d := <-idleClosed:
			idleWorst = max(idleWorst, d)
		case <-time.After(10 * time.Second):
			t.Fatal("idle keep-alive connection still open 10 s in (http-idle-timeout 2s)")
		}
	}
	select {
	case d := <-bodyClosed:
		if d > 5*time.Second {
			t.Errorf("slow body cut after %s, want about http-read-timeout (3s)", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow body still being read 10 s in (http-read-timeout 3s)")
	}
	t.Logf("%d slowloris connections cut within %s; %d idle keep-alive connections within %s", slow, worst, idle, idleWorst)
	s.waitBaseline(t, base, defaultSlack, 30*time.Second)
}

// TestFaultHugeHeaders: oversized request headers are refused with 431 before
// they cost memory; onair's memory returns to its baseline.
func TestFaultHugeHeaders(t *testing.T) {
	s := StartDebugServer(t)
	addr := strings.TrimPrefix(s.HTTP, "http://")
	time.Sleep(time.Second)
	base := s.sample(t)

	big := strings.Repeat("a", 900<<10) // under net/http's own 1 MiB default
	many := strings.Repeat("X-Filler: "+strings.Repeat("b", 90)+"\r\n", 5000)
	var wg sync.WaitGroup
	var refused, other atomic.Int64
	var peakRSS atomic.Int64
	for i := range 60 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			hdr := "X-Big: " + big + "\r\n"
			if i%2 == 1 {
				hdr = many
			}
			// Written by another goroutine: the server may answer and close before reading it all.
			go io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: onair\r\n"+hdr+"\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				other.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
				refused.Add(1)
			} else {
				t.Errorf("huge headers answered %d, want 431", resp.StatusCode)
			}
			peakRSS.Store(max(peakRSS.Load(), statusField(s.PID(), "VmRSS")<<10))
		})
	}
	wg.Wait()
	if refused.Load() < 55 {
		t.Errorf("%d of 60 huge-header requests answered 431 (%d got no answer)", refused.Load(), other.Load())
	}
	if resp, _ := Get(t, s.HTTP+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("after huge headers: /healthz %d", resp.StatusCode)
	}
	t.Logf("60 requests with ~900 KiB of headers: %d answered 431; RSS peak %.1f MiB (baseline %.1f MiB)",
		refused.Load(), float64(peakRSS.Load())/(1<<20), float64(base.RSS)/(1<<20))
	s.waitBaseline(t, base, defaultSlack, 30*time.Second)
}

// TestFaultMissingSegments: 10,000 requests for segments that do not exist
// are answered 404 without logging each one, while the stream plays on.
func TestFaultMissingSegments(t *testing.T) {
	needTools(t, "ffmpeg")
	s := StartDebugServer(t, "--log-level", "info")
	liveStream(t, s.Server)
	media := mediaPlaylistURL(t, s.HTTP, "main")
	_, pl := Get(t, media)
	seg := lastSegment(pl)
	num := regexp.MustCompile(`(\d+)(\.\w+)$`)
	if !num.MatchString(seg) {
		t.Fatalf("segment name %q has no number to vary", seg)
	}
	prefix := media[:strings.LastIndex(media, "/")+1]
	time.Sleep(2 * time.Second)
	base := s.sample(t)
	linesBefore := logLinesAtInfo(s.Logs())

	const total, conns = 10000, 32
	var next atomic.Int64
	var notFound, other atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				name := num.ReplaceAllString(seg, fmt.Sprintf("%d$2", 10000000+i))
				if i%5 == 0 {
					name = strings.Replace(name, "seg", "part", 1)
				}
				resp, err := client.Get(prefix + name)
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 404 {
					notFound.Add(1)
				} else {
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if notFound.Load() != total {
		t.Errorf("%d of %d requests for missing segments answered 404 (%d otherwise)", notFound.Load(), total, other.Load())
	}
	if n := logLinesAtInfo(s.Logs()) - linesBefore; n > 20 {
		t.Errorf("%d log lines at info level or above for %d missing segments: a client controls the log volume", n, total)
	}
	t.Logf("%d requests for missing segments over %d connections in %s (%.0f/s)", total, conns, took.Round(time.Millisecond), float64(total)/took.Seconds())
	playlistAdvances(t, s.HTTP, 10*time.Second)
	s.waitBaseline(t, base, defaultSlack, 30*time.Second)
}

// redisPort returns a free port below the kernel's ephemeral range: nodes
// dial it while Redis is down, and a dial to a port in that range can be
// given the same port as its source and connect to itself (TCP
// simultaneous open), holding the port so that redis-server cannot come back.
func redisPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(10000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port for redis-server between 20000 and 30000")
	return 0
}

// redisServer is a redis-server owned by one test, on a port of its own.
type redisServer struct {
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, port int) *redisServer {
	t.Helper()
	needTools(t, "redis-server", "redis-cli")
	r := &redisServer{port: port}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	for range 100 {
		if out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(port), "ping").Output(); strings.TrimSpace(string(out)) == "PONG" {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redis-server on port %d did not answer", port)
	return nil
}

// kill ends redis-server at once, as a crash would.
func (r *redisServer) kill() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		r.cmd.Wait()
	}
}

func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, body := Get(t, base+"/readyz")
	return resp.StatusCode, string(body)
}

// TestFaultRedisKilledAndRestarted: two nodes share a Redis that is killed.
// Both stay ready (chat degraded, and HLS of other nodes' channels), keep
// serving HLS of their own channels and their own chat rooms,
// answer the API promptly, and join up again when Redis is back.
func TestFaultRedisKilledAndRestarted(t *testing.T) {
	needTools(t, "ffmpeg")
	port := redisPort(t)
	redis := startRedis(t, port)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	a := StartDebugServer(t, "--redis-url", url)
	b := StartDebugServer(t, "--redis-url", url, "--channel", "main:"+a.Key)
	liveStream(t, a.Server)

	a1 := mustOpenChat(t, a.HTTP, "main", "alice", "")
	a2 := mustOpenChat(t, a.HTTP, "main", "anna", "")
	b1 := mustOpenChat(t, b.HTTP, "main", "bob", "")
	a1.say(t, "before")
	b1.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "before" })
	time.Sleep(time.Second)
	baseA := a.sample(t)

	redis.kill()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := readyz(t, a.HTTP)
		if code != 200 {
			t.Fatalf("/readyz with Redis down: %d %q, want 200 (degraded)", code, body)
		}
		if strings.Contains(body, "\nchat: degraded") {
			t.Logf("/readyz with Redis down: %q", body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported chat degraded: %q", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := a.metric(t, `onair_role_degraded{role="chat"}`); v != 1 {
		t.Errorf(`onair_role_degraded{role="chat"} = %v with Redis down, want 1`, v)
	}
	// Local chat works, HLS plays, the API answers.
	a1.say(t, "during")
	a2.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "during" })
	playlistAdvances(t, a.HTTP, 10*time.Second)
	start := time.Now()
	if resp, _ := Get(t, a.HTTP+"/api/v1/channels"); resp.StatusCode != 200 {
		t.Errorf("/api/v1/channels with Redis down: %d", resp.StatusCode)
	}
	t.Logf("/api/v1/channels with Redis down answered in %s", time.Since(start).Round(time.Millisecond))

	startRedis(t, port)
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := readyz(t, a.HTTP)
		if code == 200 && !strings.Contains(body, "degraded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after Redis came back: %d %q", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Messages cross nodes again (the rooms resubscribe on their own).
	deadline = time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprintf("after-%d", i)
		a1.say(t, text)
		got := false
		timeout := time.After(time.Second)
	wait:
		for {
			select {
			case l := <-b1.lines:
				if l.Type == "msg" && l.Text == text {
					got = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("messages do not cross nodes after Redis came back")
		}
	}
	if v := a.metric(t, `onair_role_degraded{role="chat"}`); v != 0 {
		t.Errorf(`onair_role_degraded{role="chat"} = %v after Redis came back, want 0`, v)
	}
	a.waitBaseline(t, baseA, defaultSlack, 30*time.Second)
}

// hangingHook accepts connections and never answers; it counts how many it holds.
type hangingHook struct {
	ln         net.Listener
	open, seen atomic.Int64
	peak       atomic.Int64
}

func startHangingHook(t *testing.T) *hangingHook {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingHook{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.seen.Add(1)
			n := h.open.Add(1)
			h.peak.Store(max(h.peak.Load(), n))
			go func() {
				io.Copy(io.Discard, c) // until the client gives up
				c.Close()
				h.open.Add(-1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}

// TestFaultModerationHook: with the screening webhook missing or hanging, the
// stream is served (failure policy open, after moderation-failure-after),
// media keeps flowing, requests to the hook do not pile up, and everything is
// released after the broadcast.
func TestFaultModerationHook(t *testing.T) {
	needTools(t, "ffmpeg")
	closedPort := freePort(t)
	hang := startHangingHook(t)
	for _, c := range []struct{ name, url string }{
		{"missing", fmt.Sprintf("http://127.0.0.1:%d/screen", closedPort)},
		{"hanging", "http://" + hang.ln.Addr().String() + "/screen"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("ONAIR_MODERATION_WEBHOOK_SECRET", "fault-test-hook-secret")
			s := StartDebugServer(t, "--moderation-webhook", c.url, "--moderation-timeout", "1s",
				"--moderation-failure-after", "2s", "--moderation-interval", "1s")
			time.Sleep(time.Second)
			base := s.sample(t)
			pub := liveStream(t, s.Server) // served once the failure policy (open) applies
			playlistAdvances(t, s.HTTP, 10*time.Second)
			mid := s.sample(t)
			time.Sleep(8 * time.Second)
			later := s.sample(t)
			playlistAdvances(t, s.HTTP, 5*time.Second)
			if later.Goroutines > mid.Goroutines+5 {
				t.Errorf("goroutines grow while the hook is %s: %d then %d 8 s later", c.name, mid.Goroutines, later.Goroutines)
			}
			if code, body := readyz(t, s.HTTP); code != 200 {
				t.Errorf("/readyz with the hook %s: %d %q", c.name, code, body)
			}
			if v := s.metric(t, "onair_moderation_fail_open_total"); v < 1 {
				t.Errorf("onair_moderation_fail_open_total = %v, want the broadcast left up by the open policy", v)
			}
			if c.name == "hanging" && hang.peak.Load() > 3 {
				t.Errorf("%d requests to the hanging hook open at once, want them bounded (one per channel)", hang.peak.Load())
			}
			pub.Stop()
			s.waitBaseline(t, base, defaultSlack, 40*time.Second)
		})
	}
	t.Logf("hanging hook: %d connections in all, at most %d at once", hang.seen.Load(), hang.peak.Load())
}

// TestFaultFFmpeg: with ffmpeg missing or hanging, keyframe screening fails
// (and the open policy keeps the stream up), thumbnails answer an error in
// bounded time, decoder processes do not accumulate and none outlives the
// broadcast.
func TestFaultFFmpeg(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := t.TempDir()
	hanging := filepath.Join(dir, "ffmpeg-that-hangs")
	// exec: the process onair starts is the one that hangs, so killing it leaves nothing behind.
	// Its odd argument finds it among all processes, orphans included.
	const marker = "3600.123"
	os.WriteFile(hanging, []byte("#!/bin/sh\nexec sleep "+marker+"\n"), 0o755)
	blocklist := filepath.Join(dir, "blocklist.txt")
	os.WriteFile(blocklist, []byte("0123456789abcdef  # a hash nothing matches\n"), 0o644)
	for _, c := range []struct{ name, path string }{
		{"missing", filepath.Join(dir, "no-such-ffmpeg")},
		{"hanging", hanging},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := StartDebugServer(t, "--ffmpeg", c.path, "--moderation-blocklist", blocklist, "--moderation-timeout", "1s",
				"--moderation-failure-after", "2s", "--moderation-interval", "1s")
			time.Sleep(time.Second)
			base := s.sample(t)
			pub := liveStream(t, s.Server)
			playlistAdvances(t, s.HTTP, 10*time.Second)
			var peakChildren int
			for range 10 {
				peakChildren = max(peakChildren, len(childPIDs(s.PID())))
				time.Sleep(500 * time.Millisecond)
			}
			if peakChildren > 1 {
				t.Errorf("%d decoder processes at once with ffmpeg %s, want at most one per channel", peakChildren, c.name)
			}
			start := time.Now()
			resp, _ := Get(t, s.HTTP+"/api/v1/channels/main/thumbnail.jpg")
			if took := time.Since(start); resp.StatusCode == 200 || took > 5*time.Second {
				t.Errorf("thumbnail with ffmpeg %s: %d after %s, want an error within the moderation timeout", c.name, resp.StatusCode, took)
			}
			playlistAdvances(t, s.HTTP, 5*time.Second)
			pub.Stop()
			s.waitBaseline(t, base, defaultSlack, 40*time.Second)
			if c.name == "hanging" {
				if n := processesRunning(marker); n > 0 {
					t.Errorf("%d hanging ffmpeg processes outlived the broadcast", n)
				}
			}
		})
	}
}

// processesRunning counts processes with arg among their arguments.
func processesRunning(arg string) int {
	n := 0
	ents, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, e := range ents {
		if raw, err := os.ReadFile(e); err == nil && bytes.Contains(raw, []byte("\x00"+arg+"\x00")) {
			n++
		}
	}
	return n
}

// mountTmpfs mounts a small tmpfs for the test, or skips it where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillDisk writes a file until the file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("fill disk: %v", err)
			}
			break
		}
	}
	// Smaller writes take what the last block left.
	for _, err := f.Write([]byte{0}); err == nil; _, err = f.Write([]byte{0}) {
	}
}

// TestFaultDiskFull: on a full disk, a first start (which must save the
// generated secret) stops with a clear error and leaves no partial file; a
// node whose state is already saved starts and serves as usual, also when the
// disk fills while it runs.
func TestFaultDiskFull(t *testing.T) {
	needTools(t, "ffmpeg")
	if os.Getuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	mnt := mountTmpfs(t, "256k")
	saved := filepath.Join(mnt, "saved")

	// A node started while there was room has its state saved.
	s := StartServer(t, "--data-dir", saved)
	s.Stop(t)

	fillDisk(t, mnt)
	fresh := filepath.Join(mnt, "fresh")
	cmd := exec.Command(onairBin, "serve", "--data-dir", fresh, "--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	cmd.Start()
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(stderr.String(), "no space left on device") || !strings.Contains(stderr.String(), "state.json") {
			t.Errorf("first start on a full disk: %v, stderr %q; want an error naming state.json and the full disk", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("first start on a full disk neither failed nor ... it hung")
	}
	if ents, _ := os.ReadDir(fresh); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("a failed first start left files behind: %v", names)
	}
	t.Logf("first start on a full disk: %s", strings.TrimSpace(stderr.String()))

	// The saved node starts on the full disk and serves a stream and chat.
	s = StartDebugServer(t, "--data-dir", saved).Server
	liveStream(t, s)
	playlistAdvances(t, s.HTTP, 10*time.Second)
	c1 := mustOpenChat(t, s.HTTP, "main", "alice", "")
	c2 := mustOpenChat(t, s.HTTP, "main", "bob", "")
	c1.say(t, "disk is full")
	c2.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "disk is full" })
}
