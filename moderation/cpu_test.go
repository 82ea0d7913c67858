package moderation

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/metricstest"
)

// TestScreeningCPU measures what screening one 720p30 channel costs at the
// default interval: the ffmpeg decoder's CPU time plus this process's, over
// 60 s of real-time stream. Set ONAIR_MODERATION_CPU=1 to run it.
func TestScreeningCPU(t *testing.T) {
	if os.Getenv("ONAIR_MODERATION_CPU") == "" {
		t.Skip("set ONAIR_MODERATION_CPU=1 to measure (takes 60 s)")
	}
	// OBS-like: 720p30, 2 s keyframe interval, B-frames.
	c := encodeClip(t, "testsrc2=s=1280x720:r=30:d=10", ingest.CodecH264, 30, 60)
	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	os.WriteFile(list, []byte("0123456789abcdef\n"), 0o644)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"action":"allow"}`)
	}))
	defer hook.Close()
	h := newHub()
	opts := DefaultOptions()
	opts.BlocklistPath = list
	opts.WebhookURL, opts.WebhookSecret = hook.URL, "k"
	opts.Enforcer = h
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	var self0, kids0, self1, kids1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids0)
	const dur = 60 * time.Second
	play(t, m, h, c, "cpu", dur, nil)
	syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids1)
	cpu := func(a, b syscall.Rusage) time.Duration {
		return time.Duration(b.Utime.Nano()-a.Utime.Nano()) + time.Duration(b.Stime.Nano()-a.Stime.Nano())
	}
	ff, self := cpu(kids0, kids1), cpu(self0, self1)
	var sb stringsBuilder
	metricstest.Write(&sb, m)
	t.Logf("60 s of 720p30 (keyframe every 2 s), interval %v: ffmpeg decoder %v CPU (%.2f%% of one core), onair process %v (%.2f%%, includes the test's feeder and hook), decoder max RSS %d KiB",
		opts.Interval, ff.Round(time.Millisecond), 100*ff.Seconds()/dur.Seconds(), self.Round(time.Millisecond), 100*self.Seconds()/dur.Seconds(), kids1.Maxrss)
	t.Log(sb.String())
}

type stringsBuilder struct{ b []byte }

func (s *stringsBuilder) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *stringsBuilder) String() string              { return fmt.Sprint(string(s.b)) }
