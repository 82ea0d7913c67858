package procstat

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A started process is measured with its children, and Stop ends the
// whole process group, grandchildren too.
func TestStartSampleStop(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "out.log")
	// The shell burns a little CPU in a subshell it waits for (reaped), then
	// leaves a sleeping child behind and waits on it.
	p, err := Start(Command{Name: "sh", Args: []string{"-c", `(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done); pwd; sleep 60 & wait`}, Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	deadline := time.Now().Add(10 * time.Second)
	for len(kids) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if b, _ := os.ReadFile(log); len(b) > 0 { // past the subshell
			kids = Descendants(p.Pid())
		}
	}
	if len(kids) != 1 {
		t.Fatalf("descendants %v, want the sleep", kids)
	}
	own, _ := CPUTime(p.Pid(), false)
	withReaped, err := CPUTime(p.Pid(), true)
	if err != nil || withReaped <= own {
		t.Errorf("CPU time %v with reaped children, %v without (%v): want more with", withReaped, own, err)
	}
	u := SampleTree(p.Pid())
	if rss, _ := RSS(p.Pid()); u.RSS <= rss || u.CPU < withReaped {
		t.Errorf("tree %+v, shell alone RSS %d CPU %v", u, rss, withReaped)
	}
	if ended, _ := p.Exited(); ended {
		t.Fatal("exited early")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v, want nil for an end by our signal", err)
	}
	if ended, _ := p.Exited(); !ended {
		t.Error("not exited after Stop")
	}
	if err := syscall.Kill(kids[0], 0); err == nil {
		time.Sleep(100 * time.Millisecond) // the kernel may take a moment to reap it
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(kids[0]) + "/stat"); len(b) > 0 && !strings.Contains(string(b), ") Z") {
			t.Errorf("grandchild %d outlived Stop: %s", kids[0], b)
		}
	}
	if b, _ := os.ReadFile(log); strings.TrimSpace(string(b)) != dir {
		t.Errorf("working directory %q, want %q", b, dir)
	}
}

// A process that fails on its own reports how.
func TestExitStatus(t *testing.T) {
	p, err := Start(Command{Name: "sh", Args: []string{"-c", "exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err %v, want exit status 3", err)
	}
	if err := p.Stop(); err == nil {
		t.Error("Stop after a failure: nil, want the exit status")
	}
}

// Kill ends a process that ignores SIGTERM at once.
func TestKill(t *testing.T) {
	p, err := Start(Command{Name: "sh", Args: []string{"-c", "trap '' TERM; sleep 60 & wait"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	p.Kill()
	if ended, err := p.Exited(); !ended || err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("after Kill: exited %v (%v) in %v", ended, err, time.Since(start))
	}
}

func TestWaitHTTP(t *testing.T) {
	port, err := FreePort()
	if err != nil || port == 0 {
		t.Fatal(port, err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	if err := WaitHTTP(context.Background(), url, 200*time.Millisecond); err == nil {
		t.Error("nothing listens: want a timeout")
	}
	srv := httptest.NewServer(http.NotFoundHandler()) // any status will do
	defer srv.Close()
	if err := WaitHTTP(context.Background(), srv.URL, 5*time.Second); err != nil {
		t.Error(err)
	}
}

func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := DirBytes(dir); n < 64<<10 {
		t.Errorf("DirBytes %d, want at least 64 KiB", n)
	}
}
