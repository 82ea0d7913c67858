package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
)

// The one channel and its key (a benchmark's key, not a secret).
const (
	channel   = "live"
	streamKey = "viewers-bench-key-0001"
)

// onairServer is one fresh onair with one channel, and its publisher.
type onairServer struct {
	p                  *procstat.Proc
	pub                *procstat.Proc
	dir                string
	rtmp, http, debug  int
	entryURL, mediaURL string
	metricsURL, gcURL  string
	metricsClient      *http.Client
}

// startOnair starts onair serving variant, its channel and key from a
// configuration file, with a reconnect grace long enough that a dropped
// publisher leaves the playlist stalled, not ended, for the whole run.
func startOnair(ctx context.Context, c config, dir, variant string) (*onairServer, error) {
	s := &onairServer{dir: dir, metricsClient: &http.Client{Timeout: 5 * time.Second}}
	for _, p := range []*int{&s.rtmp, &s.http, &s.debug} {
		port, err := procstat.FreePort()
		if err != nil {
			return nil, err
		}
		*p = port
	}
	cfg := filepath.Join(dir, "onair.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("channels:\n  - %q\n", channel+":"+streamKey)), 0o600); err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--config", cfg,
		"--rtmp-addr", "127.0.0.1:" + strconv.Itoa(s.rtmp),
		"--http-addr", "127.0.0.1:" + strconv.Itoa(s.http),
		"--debug-addr", "127.0.0.1:" + strconv.Itoa(s.debug),
		"--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn",
		"--hls-variant", variant,
		"--reconnect-grace", "30m",
	}, c.onairFlags...)
	p, err := procstat.Start(procstat.Command{Name: c.onair, Args: args, Dir: dir, Log: filepath.Join(dir, "onair.log")})
	if err != nil {
		return nil, err
	}
	s.p = p
	base := "http://127.0.0.1:" + strconv.Itoa(s.http)
	s.entryURL = base + "/hls/" + channel + "/index.m3u8"
	s.mediaURL = base + "/hls/" + channel + "/stream.m3u8"
	s.metricsURL = base + "/metrics"
	s.gcURL = "http://127.0.0.1:" + strconv.Itoa(s.debug) + "/debug/pprof/heap?gc=1"
	if err := procstat.WaitHTTP(ctx, base+"/healthz", 15*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("onair did not start (see %s): %w", filepath.Join(dir, "onair.log"), err)
	}
	return s, nil
}

// publish starts ffmpeg sending the input in a loop at its real rate, as
// a broadcaster does, and waits until the playlist lists a segment.
func (s *onairServer) publish(ctx context.Context, ffmpeg, input string) error {
	log := filepath.Join(s.dir, "ffmpeg.log")
	pub, err := procstat.Start(procstat.Command{Name: ffmpeg, Log: log, Args: []string{
		"-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", input,
		"-c", "copy", "-f", "flv", "rtmp://127.0.0.1:" + strconv.Itoa(s.rtmp) + "/live/" + streamKey}})
	if err != nil {
		return err
	}
	s.pub = pub
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pl, err := s.get(ctx, s.mediaURL); err == nil && strings.Contains(pl, "#EXTINF") {
			return nil
		}
		if ended, err := pub.Exited(); ended {
			return fmt.Errorf("ffmpeg exited (see %s): %v", log, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no segment listed 20 s after publishing (see %s and %s)", log, filepath.Join(s.dir, "onair.log"))
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// dropPublisher kills ffmpeg: its connection drops without a goodbye, so
// onair keeps the broadcast open for the reconnect grace period and the
// playlist stalls.
func (s *onairServer) dropPublisher() {
	if s.pub != nil {
		s.pub.Kill()
		s.pub = nil
	}
}

func (s *onairServer) stop() {
	if s.pub != nil {
		_ = s.pub.Stop()
	}
	_ = s.p.Stop()
	s.metricsClient.CloseIdleConnections()
}

// goroutines reads go_goroutines from onair's /metrics (-1 if it cannot).
func (s *onairServer) goroutines(ctx context.Context) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return -1
	}
	res, err := s.metricsClient.Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return int(f)
			}
		}
	}
	return -1
}

func (s *onairServer) get(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	res, err := s.metricsClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d", u, res.StatusCode)
	}
	return string(b), err
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
