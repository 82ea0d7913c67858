package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStats is what a fault test watches return to baseline in the onair process.
type procStats struct {
	Goroutines int   // go_goroutines from /metrics
	FDs        int   // entries of /proc/PID/fd
	RSS        int64 // VmRSS from /proc/PID/status, bytes
	Heap       int64 // go_memstats_heap_alloc_bytes after a forced collection, bytes
	Children   int   // processes whose parent is onair (ffmpeg decoders)
}

func (p procStats) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, RSS %.1f MiB, heap %.1f MiB, children %d",
		p.Goroutines, p.FDs, float64(p.RSS)/(1<<20), float64(p.Heap)/(1<<20), p.Children)
}

// DebugServer is a running onair with its profiling listener on.
type DebugServer struct {
	*Server
	Debug string // http://127.0.0.1:port of --debug-addr
}

// StartDebugServer is StartServer with --debug-addr, so tests can force a
// garbage collection before reading the heap.
func StartDebugServer(t testing.TB, args ...string) *DebugServer {
	t.Helper()
	port := freePort(t)
	s := StartServer(t, append([]string{"--debug-addr", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	return &DebugServer{Server: s, Debug: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// PID is the onair process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// metricLines reads the sample lines of /metrics.
func (s *Server) metricLines(t testing.TB) []string {
	t.Helper()
	resp, err := http.Get(s.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && line[0] != '#' {
			lines = append(lines, line)
		}
	}
	return lines
}

// metric reads one unlabelled sample from /metrics (-1 when absent).
func (s *Server) metric(t testing.TB, name string) float64 {
	t.Helper()
	for _, line := range s.metricLines(t) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// metricSum sums the samples of a metric whose labels contain every one of
// labels (as `name="value"`).
func (s *Server) metricSum(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, line := range s.metricLines(t) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// sample reads the process's figures now.
func (s *DebugServer) sample(t testing.TB) procStats {
	t.Helper()
	// ?gc=1 runs a collection first, so the heap figure is live data only.
	if resp, err := http.Get(s.Debug + "/debug/pprof/heap?gc=1"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	pid := s.PID()
	p := procStats{
		Goroutines: int(s.metric(t, "go_goroutines")),
		Heap:       int64(s.metric(t, "go_memstats_heap_alloc_bytes")),
		FDs:        countFDs(pid),
		RSS:        statusField(pid, "VmRSS") << 10,
		Children:   len(childPIDs(pid)),
	}
	return p
}

func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// statusField reads a "kB" field of /proc/PID/status.
func statusField(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, e := range ents {
		raw, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, n)
		}
	}
	return out
}

// baselineSlack is how far above the baseline the figures may settle: a few
// goroutines and descriptors come and go with timers and keep-alive
// connections; the runtime keeps some freed memory before returning it.
type baselineSlack struct {
	Goroutines, FDs int
	Heap, RSS       int64
}

var defaultSlack = baselineSlack{Goroutines: 8, FDs: 4, Heap: 8 << 20, RSS: 48 << 20}

// waitBaseline polls until goroutines, descriptors, heap, RSS and child
// processes are back within slack of base, and fails the test if they are not
// within timeout. It returns the last sample.
func (s *DebugServer) waitBaseline(t testing.TB, base procStats, slack baselineSlack, timeout time.Duration) procStats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := s.sample(t)
		var over []string
		if now.Goroutines > base.Goroutines+slack.Goroutines {
			over = append(over, fmt.Sprintf("goroutines %d > %d+%d", now.Goroutines, base.Goroutines, slack.Goroutines))
		}
		if now.FDs > base.FDs+slack.FDs {
			over = append(over, fmt.Sprintf("fds %d > %d+%d", now.FDs, base.FDs, slack.FDs))
		}
		if now.Heap > base.Heap+slack.Heap {
			over = append(over, fmt.Sprintf("heap %d > %d+%d", now.Heap, base.Heap, slack.Heap))
		}
		if now.RSS > base.RSS+slack.RSS {
			over = append(over, fmt.Sprintf("RSS %d > %d+%d", now.RSS, base.RSS, slack.RSS))
		}
		if now.Children > base.Children {
			over = append(over, fmt.Sprintf("child processes %d > %d", now.Children, base.Children))
		}
		if len(over) == 0 {
			t.Logf("back to baseline: %s (baseline %s)", now, base)
			return now
		}
		if time.Now().After(deadline) {
			if resp, err := http.Get(s.Debug + "/debug/pprof/goroutine?debug=1"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("goroutines:\n%s", tail(string(b), 6000))
			}
			t.Fatalf("not back to baseline within %s: %s (baseline %s)", timeout, strings.Join(over, "; "), base)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
