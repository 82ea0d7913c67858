package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onairhq/onair/chat"
)

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startChild(redisURL, node, profile string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "-node", node}
	if redisURL != "" {
		args = append(args, "-redis", redisURL)
	}
	if profile != "" {
		args = append(args, "-cpuprofile", profile+"."+node)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting server: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server did not start: %q %v", line, err)
	}
	return &child{cmd: cmd, stdin: in, addr: strings.TrimSpace(line[5:])}, nil
}

func (c *child) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// procStats reads CPU time (user+system) and resident memory of pid from /proc.
func procStats(pid int) (cpu time.Duration, rss int64, err error) {
	cpu, _, rss, err = procStats2(pid)
	return
}

// procStats2 also returns the system (kernel) part of the CPU time.
func procStats2(pid int) (cpu, sys time.Duration, rss int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
	sys = time.Duration(st) * (time.Second / 100)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			rss = kb << 10
		}
	}
	return cpu, sys, rss, nil
}

// hist records latencies in 100 µs buckets up to 60 s.
type hist struct {
	b     []atomic.Int64
	max   atomic.Int64
	count atomic.Int64
}

const bucket = 100 * time.Microsecond

func newHist() *hist { return &hist{b: make([]atomic.Int64, 600001)} }

func (h *hist) add(d time.Duration) {
	i := int(d / bucket)
	if i < 0 {
		i = 0
	}
	if i >= len(h.b) {
		i = len(h.b) - 1
	}
	h.b[i].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *hist) quantile(q float64) time.Duration {
	n := h.count.Load()
	want := int64(q*float64(n) + 0.5)
	var seen int64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= want && seen > 0 {
			return time.Duration(i+1) * bucket
		}
	}
	return 0
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	viewers := fs.Int("viewers", 1000, "viewer connections")
	senders := fs.Int("senders", 10, "sender connections")
	rate := fs.Float64("rate", 10, "messages per second, all senders together")
	dur := fs.Duration("duration", 15*time.Second, "sending time (capped at 90s)")
	redisURL := fs.String("redis", "", "Redis URL; empty uses the in-memory bus")
	nodes := fs.Int("nodes", 1, "chat server processes (more than 1 needs -redis)")
	profile := fs.String("cpuprofile", "", "servers write CPU profiles to this path prefix")
	fs.Parse(args)
	if *dur > 90*time.Second {
		*dur = 90 * time.Second
	}
	if *nodes > 1 && *redisURL == "" {
		return errors.New("-nodes > 1 needs -redis")
	}
	if *redisURL != "" && !strings.Contains(*redisURL, "127.0.0.1") && !strings.Contains(*redisURL, "localhost") {
		return errors.New("loopback only: -redis must point at 127.0.0.1")
	}

	var kids []*child
	defer func() {
		for _, k := range kids {
			k.stop()
		}
	}()
	for i := 0; i < *nodes; i++ {
		k, err := startChild(*redisURL, fmt.Sprintf("bench-%d", i), *profile)
		if err != nil {
			return err
		}
		kids = append(kids, k)
	}
	room := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)
	url := func(i int) string { return "ws://" + kids[i%len(kids)].addr + "/chat/" + room }

	var sysCPU time.Duration // kernel part of the nodes' CPU time as of the last stats call
	stats := func() (cpu time.Duration, rss int64) {
		sysCPU = 0
		for _, k := range kids {
			c, sy, r, err := procStats2(k.cmd.Process.Pid)
			if err == nil {
				cpu += c
				rss += r
				sysCPU += sy
			}
		}
		return
	}
	time.Sleep(300 * time.Millisecond)
	_, rss0 := stats()

	h := newHist()
	var received atomic.Int64
	var measuring atomic.Bool
	dialer := websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 1024, HandshakeTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	var mu sync.Mutex
	sem := make(chan struct{}, 50)
	var dialErr atomic.Value
	welcomed := make(chan struct{}, *viewers)
	t0 := time.Now()
	for i := 0; i < *viewers; i++ {
		sem <- struct{}{}
		c, _, err := dialer.Dial(url(i), nil)
		<-sem
		if err != nil {
			dialErr.Store(err)
			break
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				if first {
					first = false
					welcomed <- struct{}{}
					continue
				}
				if !measuring.Load() {
					continue
				}
				now := time.Now().UnixNano()
				for len(data) > 0 {
					line := data
					if i := bytes.IndexByte(data, '\n'); i >= 0 {
						line, data = data[:i], data[i+1:]
					} else {
						data = nil
					}
					j := bytes.Index(line, []byte(`"text":"t=`))
					if j < 0 {
						continue
					}
					rest := line[j+10:]
					k := bytes.IndexByte(rest, ' ')
					if k < 0 {
						continue
					}
					sent, err := strconv.ParseInt(string(rest[:k]), 10, 64)
					if err != nil {
						continue
					}
					received.Add(1)
					h.add(time.Duration(now - sent))
				}
			}
		}()
	}
	if err, _ := dialErr.Load().(error); err != nil {
		return fmt.Errorf("dialing viewer %d: %w", len(conns), err)
	}
	for i := 0; i < *viewers; i++ {
		<-welcomed
	}
	connectTime := time.Since(t0)
	time.Sleep(2 * time.Second) // let the servers settle after the connection storm
	runtime.GC()
	_, rss1 := stats()

	// Senders are moderators (a token signed with the nodes' secret, sent in a join message)
	// so the per-IP rate limit does not apply: every bench client shares 127.0.0.1.
	var sconns []*websocket.Conn
	var refused atomic.Int64
	token := chat.SignModeratorToken([]byte(benchSecret), room, time.Hour)
	for i := 0; i < *senders; i++ {
		c, _, err := dialer.Dial(url(i), nil)
		if err != nil {
			return fmt.Errorf("dialing sender: %w", err)
		}
		if err := c.WriteJSON(map[string]string{"type": "join", "name": fmt.Sprintf("sender%d", i), "token": token}); err != nil {
			return fmt.Errorf("joining sender: %w", err)
		}
		sconns = append(sconns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				if bytes.Contains(data, []byte(`"type":"error"`)) {
					refused.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	measuring.Store(true)
	cpu0, _ := stats()
	sys0 := sysCPU
	self0, _, _ := procStats(os.Getpid())
	load0, _ := os.ReadFile("/proc/loadavg")
	start := time.Now()
	var sent atomic.Int64
	var swg sync.WaitGroup
	per := *rate / float64(*senders)
	for i, c := range sconns {
		swg.Add(1)
		go func() {
			defer swg.Done()
			interval := time.Duration(float64(time.Second) / per)
			next := start.Add(time.Duration(i) * interval / time.Duration(*senders))
			for n := 0; ; n++ {
				time.Sleep(time.Until(next))
				if time.Since(start) >= *dur {
					return
				}
				msg := fmt.Sprintf("t=%d s=%d-%d ", time.Now().UnixNano(), i, n)
				msg += strings.Repeat("x", max(0, 64-len(msg)))
				if err := c.WriteJSON(map[string]string{"type": "send", "text": msg}); err != nil {
					return
				}
				sent.Add(1)
				next = next.Add(interval)
			}
		}()
	}
	swg.Wait()
	elapsed := time.Since(start)
	cpu1, rss2 := stats()
	sys1 := sysCPU
	self1, _, _ := procStats(os.Getpid())
	load1, _ := os.ReadFile("/proc/loadavg")
	// Wait for stragglers (bounded).
	expected := (sent.Load() - refused.Load()) * int64(*viewers)
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < expected && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := received.Load()
	var frames, deliveries int64
	fanout := map[string]int64{}
	for _, k := range kids {
		frames += metric(k.addr, "onair_chat_frames_total")
		deliveries += metric(k.addr, "onair_chat_deliveries_total")
		for _, le := range []string{"0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"} {
			fanout[le] += metric(k.addr, `onair_chat_fanout_seconds_bucket{le="`+le+`"}`)
		}
	}
	for _, c := range append(conns, sconns...) {
		c.Close()
	}
	wg.Wait()

	bus := "memory"
	if *redisURL != "" {
		bus = "redis"
	}
	fmt.Printf("bus=%s nodes=%d viewers=%d senders=%d rate=%.0f msg/s duration=%v\n", bus, *nodes, *viewers, *senders, *rate, elapsed.Round(time.Millisecond))
	fmt.Printf("connect: %v for %d viewers\n", connectTime.Round(time.Millisecond), *viewers)
	fmt.Printf("sent=%d refused=%d expected_deliveries=%d received=%d lost=%d\n", sent.Load(), refused.Load(), expected, got, expected-got)
	fmt.Printf("deliveries/s=%.0f (server frames written: %d, %.2f events per frame)\n", float64(got)/dur.Seconds(), deliveries, float64(got)/float64(max(deliveries, 1)))
	_ = frames
	if all := fanout["+Inf"]; all > 0 {
		fmt.Printf("server fan-out per frame (all frames of the run): ≤10ms %.1f%%, ≤25ms %.1f%%, ≤50ms %.1f%%, ≤100ms %.1f%%, ≤250ms %.1f%%\n",
			100*float64(fanout["0.01"])/float64(all), 100*float64(fanout["0.025"])/float64(all), 100*float64(fanout["0.05"])/float64(all),
			100*float64(fanout["0.1"])/float64(all), 100*float64(fanout["0.25"])/float64(all))
	}
	fmt.Printf("latency p50=%v p99=%v max=%v\n", h.quantile(0.50), h.quantile(0.99), time.Duration(h.max.Load()).Round(100*time.Microsecond))
	cpuPct := 100 * float64(cpu1-cpu0) / float64(elapsed)
	fmt.Printf("server_cpu=%.1f%% of one core (all nodes together, during sending; kernel %.1f%%)\n", cpuPct, 100*float64(sys1-sys0)/float64(elapsed))
	fmt.Printf("load_tool_cpu=%.1f%% of one core; loadavg before: %s; after: %s\n", 100*float64(self1-self0)/float64(elapsed),
		strings.Join(strings.Fields(string(load0))[:3], " "), strings.Join(strings.Fields(string(load1))[:3], " "))
	fmt.Printf("server_rss: idle=%.1f MiB connected=%.1f MiB end=%.1f MiB; per_connection=%.1f KiB\n",
		float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(rss2)/(1<<20), float64(rss1-rss0)/float64(*viewers)/1024)
	return nil
}

// metric reads one counter from a node's /metrics.
func metric(addr, name string) int64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			// The text format writes large values in exponent form (1.5e+06).
			n, _ := strconv.ParseFloat(f[1], 64)
			return int64(n)
		}
	}
	return 0
}
