package moderation

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/metricstest"
)

// encodeBroadcastClip encodes an OBS-like 720p30 H.264 stream: 3 Mbit/s,
// keyframe every second, two B-frames.
func encodeBroadcastClip(t testing.TB, seconds int) clip {
	t.Helper()
	needFFmpeg(t)
	out := filepath.Join(t.TempDir(), "clip.h264")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=s=1280x720:r=30:d=%d", seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M",
		"-bf", "2", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
		"-f", "h264", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	c := splitAnnexB(ingest.CodecH264, data)
	c.fps = 30
	frameSize(t, &c.track)
	for i := range c.aus {
		d := time.Duration(i) * time.Second / 30
		c.aus[i].DTS, c.aus[i].PTS = d, d
	}
	return c
}

// procStats samples our ffmpeg children: the largest VmRSS seen, the mean of
// the summed VmRSS over the samples (a decoder that is not running counts
// as 0), and the CPU ticks of each process as last seen in /proc/PID/stat.
type procStats struct {
	mu       sync.Mutex
	peakRSS  int64 // KiB
	peakAnon int64 // KiB: RssAnon, the part not shared with other ffmpeg processes
	sumRSS   int64 // KiB, summed over samples
	samples  int64
	ticks    map[int]int64 // utime+stime by pid
}

func (p *procStats) sample(t *testing.T) {
	var total int64
	for _, pid := range ffmpegChildren(t) {
		rss, anon := statusKiB(pid, "VmRSS:"), statusKiB(pid, "RssAnon:")
		total += rss
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// After the command: state is field 0; utime and stime are 11 and 12.
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		p.mu.Lock()
		p.peakRSS = max(p.peakRSS, rss)
		p.peakAnon = max(p.peakAnon, anon)
		p.ticks[pid] = ut + st
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.sumRSS += total
	p.samples++
	p.mu.Unlock()
}

func statusKiB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line[len(key):])
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// TestDecoderFootprint measures the decoder's memory and CPU per channel with
// an OBS-like stream (720p30, 3 Mbit/s, 1 s GOP, B-frames) at the default
// interval, with screeners and without (thumbnails only). Set
// ONAIR_MODERATION_FOOTPRINT=1 to run it (ONAIR_MODERATION_FOOTPRINT_SECONDS,
// default 60, sets the length).
func TestDecoderFootprint(t *testing.T) {
	if os.Getenv("ONAIR_MODERATION_FOOTPRINT") == "" {
		t.Skip("set ONAIR_MODERATION_FOOTPRINT=1 to measure")
	}
	dur := 60 * time.Second
	if s, err := strconv.Atoi(os.Getenv("ONAIR_MODERATION_FOOTPRINT_SECONDS")); err == nil && s > 0 {
		dur = time.Duration(s) * time.Second
	}
	if n := len(ffmpegChildren(t)); n != 0 {
		t.Skipf("%d ffmpeg children already running", n)
	}
	c := encodeBroadcastClip(t, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"action":"allow"}`)
	}))
	defer hook.Close()
	// "thumbnails, asked every 5 s": no screeners, and a client fetching the
	// thumbnail as often as its Cache-Control (max-age=5) lets it.
	for _, mode := range []string{"screening", "thumbnails, never asked", "thumbnails, asked every 5 s"} {
		t.Run(mode, func(t *testing.T) {
			h := newHub()
			var m *Moderator
			opts := DefaultOptions()
			if mode == "screening" {
				opts.WebhookURL, opts.WebhookSecret = hook.URL, "k"
			}
			var ask func(time.Duration)
			var asks sync.WaitGroup
			if strings.Contains(mode, "asked every") {
				next := 5 * time.Second
				ask = func(el time.Duration) {
					if el < next {
						return
					}
					next += 5 * time.Second
					asks.Add(1)
					go func() {
						defer asks.Done()
						rec := httptest.NewRecorder()
						req := httptest.NewRequest("GET", "/api/v1/channels/fp/thumbnail.jpg", nil)
						req.SetPathValue("name", "fp")
						m.ThumbnailHandler().ServeHTTP(rec, req)
						if rec.Code != 200 {
							t.Errorf("thumbnail at %v: %d", el, rec.Code)
						}
					}()
				}
			}
			opts.Enforcer = h
			opts.Logger = quietLogger()
			m = newModerator(t, opts)
			ps := &procStats{ticks: map[int]int64{}}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						ps.sample(t)
					}
				}
			}()
			var kids0, kids1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids0)
			play(t, m, h, c, "fp", dur, ask)
			asks.Wait()
			m.Close() // the pool's decoder is reaped, for getrusage
			close(stop)
			wg.Wait()
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids1)
			var ticks int64
			for _, v := range ps.ticks {
				ticks += v
			}
			hz := int64(100) // USER_HZ on Linux
			procCPU := time.Duration(ticks) * time.Second / time.Duration(hz)
			ruCPU := time.Duration(kids1.Utime.Nano()-kids0.Utime.Nano()) + time.Duration(kids1.Stime.Nano()-kids0.Stime.Nano())
			var sb strings.Builder
			metricstest.Write(&sb, m)
			decoded := ""
			for _, l := range strings.Split(sb.String(), "\n") {
				if strings.HasPrefix(l, "onair_moderation_frames_decoded_total") {
					decoded = strings.Fields(l)[1]
				}
			}
			t.Logf("%s, %v of 720p30 3 Mbit/s: %s frames decoded by %d ffmpeg processes; VmRSS peak %.1f MiB (RssAnon %.1f MiB), mean %.1f MiB; CPU %v by /proc stat (%.2f%% of a core), %v by getrusage (%.2f%%)",
				mode, dur, decoded, len(ps.ticks), float64(ps.peakRSS)/1024, float64(ps.peakAnon)/1024, float64(ps.sumRSS)/float64(max(ps.samples, 1))/1024,
				procCPU, 100*procCPU.Seconds()/dur.Seconds(), ruCPU.Round(time.Millisecond), 100*ruCPU.Seconds()/dur.Seconds())
		})
	}
}
