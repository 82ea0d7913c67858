package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
)

// onairServer is the onair process under soak.
type onairServer struct {
	cmd         *exec.Cmd
	http, debug string // base URLs
	rtmp        string // rtmp://127.0.0.1:port/live
	exited      chan struct{}
	logMu       sync.Mutex
	log         bytes.Buffer
	logFile     *os.File
}

func channelName(i int) string { return fmt.Sprintf("soak%d", i) }
func streamKey(i int) string   { return fmt.Sprintf("soak-key-%02d-0123456789", i) }

// startOnair runs onair with c.channels channels and limits raised for the
// load, which all comes from 127.0.0.1.
func startOnair(ctx context.Context, c config, dir string) (*onairServer, error) {
	var ports [3]int
	for i := range ports {
		p, err := procstat.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	s := &onairServer{
		http:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		debug:  fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		rtmp:   fmt.Sprintf("rtmp://127.0.0.1:%d/live", ports[0]),
		exited: make(chan struct{}),
	}
	args := []string{"serve",
		"--rtmp-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--debug-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn",
	}
	args = append(args, c.onairFlags...)
	var chans []string
	for i := range c.channels {
		chans = append(chans, channelName(i)+":"+streamKey(i))
	}
	s.cmd = exec.Command(c.onair, args...)
	// Keys and limits in the environment, as docs/operator.md advises. Settings a
	// build does not have are ignored there.
	s.cmd.Env = append(os.Environ(),
		"ONAIR_CHANNEL="+strings.Join(chans, ","),
		"ONAIR_CHAT_CONNS_PER_IP=100000",
		"ONAIR_CHAT_IP_RATE_MESSAGES=100000",
		"ONAIR_CHAT_UPGRADES_PER_IP=100000",
		"ONAIR_RTMP_CONNS_PER_IP=1000",
	)
	f, err := os.Create(filepath.Join(dir, "onair.log"))
	if err != nil {
		return nil, err
	}
	s.logFile = f
	s.cmd.Stderr = io.MultiWriter(f, lockedWriter{&s.logMu, &s.log})
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start onair: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(s.http + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("onair exited at start:\n%s", s.logTail())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("onair did not answer in 20 s:\n%s", s.logTail())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.w.(*bytes.Buffer); ok && b.Len() > 1<<20 {
		b.Next(b.Len() / 2) // keep the recent half
	}
	return l.w.Write(p)
}

func (s *onairServer) stop() {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.logFile.Close()
}

func (s *onairServer) logTail() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	b := s.log.String()
	if len(b) > 4000 {
		b = "…" + b[len(b)-4000:]
	}
	return b
}

func (s *onairServer) errorLines() int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return strings.Count(s.log.String(), "level=ERROR")
}

// sample reads the process's figures; the heap after a forced collection.
func (s *onairServer) sample(ctx context.Context) (sample, error) {
	var out sample
	req, _ := http.NewRequestWithContext(ctx, "GET", s.debug+"/debug/pprof/heap?gc=1", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", s.http+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch name {
		case "go_goroutines":
			out.goroutines = int(f)
		case "go_memstats_heap_alloc_bytes":
			out.heap = int64(f)
		}
	}
	pid := s.cmd.Process.Pid
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		out.fds = len(ents)
	}
	out.rss, _ = procstat.RSS(pid)
	out.children = len(procstat.Descendants(pid))
	return out, nil
}
