package e2e

import (
	"encoding/csv"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// probeFrames decodes an HLS stream with ffprobe, from wherever it joins until
// the playlist ends, and returns the presentation times of its frames by type.
func probeFrames(t testing.TB, url string, timeout time.Duration) (video, audio []float64) {
	t.Helper()
	cmd := exec.Command("timeout", fmt.Sprint(int(timeout.Seconds())), "ffprobe", "-v", "error",
		"-show_entries", "frame=media_type,best_effort_timestamp_time", "-of", "csv=p=0", url)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v\n%s", url, err, stderr)
	}
	r := csv.NewReader(strings.NewReader(string(out)))
	r.FieldsPerRecord = -1 // side data adds fields to some rows
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parse ffprobe output: %v", err)
	}
	for _, r := range rows {
		if len(r) < 2 {
			continue
		}
		ts, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			continue
		}
		switch r[0] {
		case "video":
			video = append(video, ts)
		case "audio":
			audio = append(audio, ts)
		}
	}
	return video, audio
}

// checkContinuous asserts that frames are evenly spaced by step, with none
// missing or repeated, and returns the span they cover.
func checkContinuous(t testing.TB, kind string, ts []float64, step float64) float64 {
	t.Helper()
	if len(ts) < 2 {
		t.Fatalf("%s: decoded %d frames", kind, len(ts))
	}
	span := ts[len(ts)-1] - ts[0]
	want := int(math.Round(span/step)) + 1
	if len(ts) != want {
		t.Errorf("%s: decoded %d frames over %.3f s, the publisher sent %d in that window", kind, len(ts), span, want)
	}
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; math.Abs(d-step) > step/4 {
			t.Errorf("%s: frame %d is %.4f s after the previous one, want %.4f", kind, i, d, step)
			break
		}
	}
	return span
}

var (
	sourcesMu sync.Mutex
	sources   = map[string]string{}
)

// sharedSource encodes each distinct source once per run.
func sharedSource(t testing.TB, src Source) string {
	sourcesMu.Lock()
	defer sourcesMu.Unlock()
	id := fmt.Sprintf("%+v", src)
	if f, ok := sources[id]; ok {
		return f
	}
	f := filepath.Join(sharedTempDir, fmt.Sprintf("source-%d.flv", len(sources)))
	encodeFLV(t, f, src)
	sources[id] = f
	return f
}

// TestPublishAndWatch publishes with ffmpeg (libx264 defaults, so B-frames)
// and decodes the live HLS with ffprobe, for every variant and track set.
func TestPublishAndWatch(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	hd := Source{Width: 1280, Height: 720, FPS: 30, Seconds: 16, Video: true, Audio: true}
	cases := []struct {
		name    string
		variant string
		src     Source
	}{
		{"lowlatency 720p30 h264+aac", "lowlatency", hd},
		{"mpegts 720p30 h264+aac", "mpegts", hd},
		{"fmp4 720p30 h264+aac", "fmp4", hd},
		{"lowlatency audio only", "lowlatency", Source{Seconds: 16, Audio: true}},
		{"lowlatency video only", "lowlatency", Source{Width: 640, Height: 360, FPS: 30, Seconds: 16, Video: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src.withDefaults()
			file := sharedSource(t, c.src)
			srv := StartServer(t, "--hls-variant", c.variant)
			pub := Publish(t, file, srv.RTMP+"/"+srv.Key, false)
			playlist := srv.HTTP + "/hls/main/index.m3u8"
			WaitHTTP(t, playlist, 10*time.Second)

			video, audio := probeFrames(t, playlist, 60*time.Second)
			if exited, err := pub.Wait(30 * time.Second); !exited || err != nil {
				t.Fatalf("publisher: exited=%v err=%v\n%s", exited, err, pub.Output())
			}
			if src.Video {
				span := checkContinuous(t, "video", video, 1/float64(src.FPS))
				// ffprobe joins a few segments behind live; it must still read most of the stream.
				if span < src.Seconds/2 {
					t.Errorf("video: read only %.1f s of a %.0f s stream", span, src.Seconds)
				}
				t.Logf("video: %d frames over %.2f s", len(video), span)
			} else if len(video) > 0 {
				t.Errorf("audio-only stream has %d video frames", len(video))
			}
			if src.Audio {
				span := checkContinuous(t, "audio", audio, 1024.0/48000)
				t.Logf("audio: %d frames over %.2f s", len(audio), span)
			} else if len(audio) > 0 {
				t.Errorf("video-only stream has %d audio frames", len(audio))
			}
		})
	}
}
