package e2e

import (
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onairhq/onair/moderation"
)

// TestModerationTakedown publishes a stream that turns into a red screen
// after 4 s; a hook that blocks mostly-one-colour frames must get it taken down.
func TestModerationTakedown(t *testing.T) {
	needTools(t)
	file := filepath.Join(t.TempDir(), "switch.flv")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex",
		"testsrc2=s=640x360:r=30:d=4[a];color=c=red:s=640x360:r=30:d=8[b];[a][b]concat=n=2:v=1",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-f", "flv", file)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	var mu sync.Mutex
	var firstBad time.Time
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, _, err := r.FormFile("frame")
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		img, _, err := image.Decode(f)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		c := img.At(img.Bounds().Dx()/2, img.Bounds().Dy()/2)
		r8, g8, b8, _ := c.RGBA()
		if r8 > 0xc000 && g8 < 0x4000 && b8 < 0x4000 {
			mu.Lock()
			if firstBad.IsZero() {
				firstBad, _ = time.Parse(time.RFC3339Nano, r.FormValue("received_at"))
			}
			mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"action": "block", "reason": "mostly one colour", "ban_seconds": 20})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"action": "allow"})
	}))
	defer hook.Close()
	s := StartServer(t, "--moderation-webhook", hook.URL, "--moderation-webhook-secret", "k", "--moderation-interval", "1s")

	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.HTTP, "http")+"/chat/main", nil)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	defer ws.Close()
	notice := make(chan string, 1)
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(data), "\n") {
				var m struct{ Type, Kind, Reason string }
				if json.Unmarshal([]byte(line), &m) == nil && m.Type == "system" && m.Kind == "taken_down" {
					notice <- m.Reason
					return
				}
			}
		}
	}()

	pub := Publish(t, file, s.RTMP+"/"+s.Key, false)
	exited, _ := pub.Wait(11 * time.Second)
	cut := time.Now()
	if !exited {
		t.Fatal("publisher still connected 11 s into a stream that turns red at 4 s")
	}
	mu.Lock()
	bad := firstBad
	mu.Unlock()
	if bad.IsZero() {
		t.Fatalf("publisher ended but the hook never blocked:\n%s", pub.Output())
	}
	t.Logf("first bad keyframe entered onair -> publisher cut off: %v (upper bound: includes ffmpeg noticing the closed connection)", cut.Sub(bad).Round(time.Millisecond))
	if d := cut.Sub(bad); d > 2*time.Second {
		t.Errorf("cut off %v after the bad keyframe", d)
	}
	select {
	case reason := <-notice:
		if !strings.Contains(reason, "mostly one colour") {
			t.Errorf("chat notice reason %q", reason)
		}
	case <-time.After(3 * time.Second):
		t.Error("no taken_down notice in chat")
	}
	resp, _ := Get(t, s.HTTP+"/hls/main/index.m3u8")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("playlist after takedown: %s, want 404", resp.Status)
	}
	again := Publish(t, file, s.RTMP+"/"+s.Key, false)
	if exited, _ := again.Wait(5 * time.Second); !exited {
		t.Error("republish during the ban was not refused")
	}
}

// keyframeTimes returns the presentation times of file's video keyframes
// on the broadcast's timeline, which starts at the first frame's decode time
// (B-frames put the first keyframe's presentation a few frames later).
func keyframeTimes(t *testing.T, file string) []time.Duration {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "packet=pts_time,dts_time,flags", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var keys []time.Duration
	first := time.Duration(-1)
	for _, line := range strings.Fields(string(out)) {
		f := strings.Split(line, ",") // pts,dts,flags
		if len(f) < 3 {
			continue
		}
		pts, _ := strconv.ParseFloat(f[0], 64)
		dts, _ := strconv.ParseFloat(f[1], 64)
		if first < 0 {
			first = time.Duration(dts * float64(time.Second))
		}
		if strings.Contains(f[2], "K") {
			keys = append(keys, (time.Duration(pts*float64(time.Second)) - first).Round(time.Millisecond))
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no keyframes in %s", file)
	}
	return keys
}

// TestModerationBetweenKeyframes publishes a blocklisted pattern (colour
// bars) with a black box drawn on exactly its keyframes, the evasion of
// keyframe-only screening. Screening frames between keyframes (the
// default) takes it down on a frame between keyframes; screening keyframes
// only lets it run.
func TestModerationBetweenKeyframes(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	stream := filepath.Join(dir, "evasion.flv")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "smptebars=s=640x360:r=30:d=12",
		"-vf", "drawbox=c=black:t=fill:enable='not(mod(n\\,30))'",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-f", "flv", stream)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	keyframes := keyframeTimes(t, stream)
	bars := filepath.Join(dir, "bars.jpg")
	if b, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", "smptebars=s=640x360", "-frames:v", "1", bars).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	h, err := moderation.HashImageFile(bars)
	if err != nil {
		t.Fatal(err)
	}
	blocklist := filepath.Join(dir, "blocklist.txt")
	if err := os.WriteFile(blocklist, []byte(fmt.Sprintf("%016x smptebars\n", h)), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		mode        string
		takenDown   bool
		runsAtLeast time.Duration
	}{
		{"any", true, 0},
		{"keyframes", false, 8 * time.Second},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := StartServer(t, "--moderation-blocklist", blocklist, "--moderation-sample", tc.mode)
			start := time.Now()
			pub := Publish(t, stream, s.RTMP+"/"+s.Key, false)
			if !tc.takenDown {
				if exited, _ := pub.Wait(tc.runsAtLeast); exited {
					t.Fatalf("keyframe-only screening ended the publish:\n%s\n%s", pub.Output(), tail(s.Logs(), 20))
				}
				return
			}
			exited, _ := pub.Wait(10 * time.Second)
			cut := time.Since(start)
			if !exited {
				t.Fatalf("the evasion still streams 10 s in:\n%s", tail(s.Logs(), 30))
			}
			// How soon depends on where the random samples fall (the first
			// within 1 s, then one per 2 s) and, on a loaded machine, on
			// samples superseded while the decoder starts: logged, not
			// asserted (docs/benchmarks.md measures it). What must hold is
			// that the frame that matched lies between keyframes.
			m := regexp.MustCompile(`matches a blocklisted image \(smptebars\)".* keyframe_time=(\S+)`).FindStringSubmatch(s.Logs())
			if m == nil {
				t.Fatalf("no blocklist takedown in the log:\n%s", tail(s.Logs(), 30))
			}
			at, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("keyframe_time %q: %v", m[1], err)
			}
			t.Logf("publisher started -> cut off: %v; the frame that matched is at %v of media time", cut.Round(time.Millisecond), at)
			if slices.Contains(keyframes, at) {
				t.Errorf("the frame that matched (%v) is a keyframe (%v), which shows the black box", at, keyframes)
			}
		})
	}
}
