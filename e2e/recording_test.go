package e2e

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// recordingView is a recording as /api/v1/channels/{name}/recordings lists it.
type recordingView struct {
	ID        string  `json:"id"`
	Duration  float64 `json:"duration"`
	Size      int64   `json:"size"`
	State     string  `json:"state"`
	Stopped   string  `json:"stopped"`
	Playlist  string  `json:"playlist"`
	Thumbnail string  `json:"thumbnail"`
}

func recordings(t *testing.T, s *Server, admin string) []recordingView {
	t.Helper()
	var h []string
	if admin != "" {
		h = []string{"Authorization", "Bearer " + admin}
	}
	resp, body := Get(t, s.HTTP+"/api/v1/channels/main/recordings", h...)
	if resp.StatusCode != 200 {
		t.Fatalf("recordings: %d %s", resp.StatusCode, body)
	}
	var v struct{ Recordings []recordingView }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Recordings
}

// waitRecording waits until main's newest recording satisfies cond.
func waitRecording(t *testing.T, s *Server, what string, timeout time.Duration, cond func(recordingView) bool) recordingView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if rs := recordings(t, s, ""); len(rs) > 0 && cond(rs[0]) {
			return rs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recording %s within %s: %+v", what, timeout, recordings(t, s, ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A 60 s broadcast is recorded; its VOD playlist plays from start to end in
// hls.js and ffprobe decodes every frame with no gap; the export is one MP4
// with the moov first and the right duration.
func TestRecordingVOD(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	const seconds, fps = 60, 30
	file := EncodeFLV(t, Source{Width: 320, Height: 240, FPS: fps, Seconds: seconds})
	s := StartServer(t, "--record", "all", "--admin-token", "recording-admin-token-0123")
	pub := Publish(t, file, s.RTMP+"/"+s.Key, false)

	live := waitRecording(t, s, "being recorded", 20*time.Second, func(r recordingView) bool { return r.State == "recording" && r.Duration >= 3 })
	resp, pl := Get(t, s.HTTP+live.Playlist)
	if resp.StatusCode != 200 || !bytes.Contains(pl, []byte("#EXT-X-PLAYLIST-TYPE:EVENT")) || bytes.Contains(pl, []byte("ENDLIST")) {
		t.Fatalf("live recording's playlist: %d\n%s", resp.StatusCode, pl)
	}
	if exited, err := pub.Wait(seconds*time.Second + 20*time.Second); !exited || err != nil {
		t.Fatalf("publisher: exited %v, %v\n%s", exited, err, pub.Output())
	}
	rec := waitRecording(t, s, "complete", 10*time.Second, func(r recordingView) bool { return r.State == "complete" })
	t.Logf("recording %s: %.2f s, %d bytes", rec.ID, rec.Duration, rec.Size)
	if math.Abs(rec.Duration-seconds) > 0.5 {
		t.Errorf("recorded %.2f s of a %d s broadcast", rec.Duration, seconds)
	}
	resp, pl = Get(t, s.HTTP+rec.Playlist)
	if !bytes.Contains(pl, []byte("#EXT-X-PLAYLIST-TYPE:VOD")) || !bytes.HasSuffix(pl, []byte("#EXT-X-ENDLIST\n")) ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=86400") {
		t.Fatalf("final playlist (Cache-Control %q):\n%s", resp.Header.Get("Cache-Control"), pl)
	}

	video, audio := probeFrames(t, s.HTTP+rec.Playlist, 60*time.Second)
	t.Logf("ffprobe: %d video frames, %d audio frames", len(video), len(audio))
	checkContinuous(t, "video", video, 1.0/fps)
	checkContinuous(t, "audio", audio, 1024.0/48000)
	if len(video) != seconds*fps {
		t.Errorf("decoded %d video frames, want all %d", len(video), seconds*fps)
	}

	if rec.Thumbnail == "" {
		t.Error("the recording has no thumbnail")
	} else if resp, img := Get(t, s.HTTP+rec.Thumbnail); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || len(img) < 1000 {
		t.Errorf("thumbnail: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(img))
	}
	playVOD(t, s.HTTP+rec.Playlist, seconds, 0)
	replayPages(t, s, rec.ID)

	out := filepath.Join(t.TempDir(), "replay.mp4")
	cmd := exec.Command(onairBin, "recording", "export", rec.ID, out, "--data-dir", s.DataDir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onair recording export: %v\n%s", err, b)
	}
	raw, _ := os.ReadFile(out)
	moov, mdat := bytes.Index(raw, []byte("moov")), bytes.Index(raw, []byte("mdat"))
	if moov < 0 || mdat < 0 || moov > mdat {
		t.Errorf("export: moov at %d, mdat at %d: not a progressive (faststart) MP4", moov, mdat)
	}
	dur, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", out).Output()
	d, _ := strconv.ParseFloat(strings.TrimSpace(string(dur)), 64)
	frames, _ := probeFrames(t, out, 60*time.Second)
	t.Logf("export: %d bytes, %.3f s, %d video frames", len(raw), d, len(frames))
	if math.Abs(d-seconds) > 0.3 || len(frames) != seconds*fps {
		t.Errorf("export lasts %.3f s with %d frames, want %d s and %d", d, len(frames), seconds, seconds*fps)
	}
}

// playVOD plays a VOD playlist in hls.js (the newest, as pinned) at 8× speed
// to its end, and checks it ended with no fatal error and no hole in the
// buffered media longer than maxHole.
func playVOD(t *testing.T, src string, seconds float64, maxHole float64) {
	t.Helper()
	site := servePlayerSite(t, playersDir(t))
	c := playerCase{"hlsjs-vod", "hls.js latest, VOD", "fmp4", "hlsjs", "hls.js", "default"}
	ctx, read := openPlayer(t, site, src, c)
	deadline := time.Now().Add(30 * time.Second)
	for read().StartMs == nil {
		if time.Now().After(deadline) {
			t.Fatalf("hls.js did not start the replay: %s", describePlay(read()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("video").playbackRate = 8`)); err != nil {
		t.Fatal(err)
	}
	var ended bool
	var at, dur float64
	for deadline = time.Now().Add(time.Duration(seconds/8*float64(time.Second)) + 30*time.Second); !ended; {
		if time.Now().After(deadline) {
			t.Fatalf("the replay did not reach its end: at %.2f of %.2f s, %s", at, dur, describePlay(read()))
		}
		time.Sleep(500 * time.Millisecond)
		ended, _ = chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("video").ended`))
		at, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("video").currentTime`))
		dur, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("video").duration`))
	}
	st := read()
	t.Logf("hls.js %s played the replay to its end: %.2f of %.2f s", st.Version, at, dur)
	long := slices.ContainsFunc(st.Holes, func(h bufferHole) bool { return h.End-h.Start > maxHole })
	if len(st.Fatal) > 0 || long || math.Abs(dur-seconds) > 0.5 {
		t.Errorf("replay: duration %.2f s, fatal %s, holes %v", dur, joinRaw(st.Fatal), st.Holes)
	}
}

// replayPages checks the channel page lists the replay and the replay page plays it.
func replayPages(t *testing.T, s *Server, id string) {
	t.Helper()
	b := newBrowser(t)
	watch := b.page("watch")
	do(t, watch, chromedp.Navigate(s.HTTP+"/watch/main"))
	waitJS(t, watch, "the replay listed on the channel page",
		`!document.getElementById("replays").hidden && !!document.querySelector('.replay-list a[data-id="`+id+`"]')`, 10*time.Second)
	href := eval[string](t, watch, `document.querySelector('.replay-list a[data-id="`+id+`"]').getAttribute("href")`)
	if href != "/replay/main/"+id {
		t.Fatalf("replay link %q", href)
	}
	replay := b.page("replay")
	do(t, replay, chromedp.Navigate(s.HTTP+href))
	waitJS(t, replay, "the replay page playing", `document.getElementById("video").currentTime > 2`, 20*time.Second)
	if fatal := eval[int](t, replay, `window.__onair.fatal.length`); fatal != 0 {
		t.Errorf("replay page: %d fatal errors", fatal)
	}
	if c := b.Console(); len(c) > 0 {
		t.Errorf("console errors: %v", c)
	}
}

// A publisher killed and back within the grace period gives one recording
// holding both parts, with a discontinuity between them, that hls.js plays
// through.
func TestRecordingReconnect(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	file := sharedSource(t, Source{Width: 320, Height: 240, FPS: 30, Seconds: 6})
	s := StartServer(t, "--record", "all", "--reconnect-grace", "10s")
	pub := Publish(t, file, s.RTMP+"/"+s.Key, true)
	waitRecording(t, s, "of the first session", 20*time.Second, func(r recordingView) bool { return r.Duration >= 5 })
	pub.Kill()
	time.Sleep(2 * time.Second)
	pub = Publish(t, file, s.RTMP+"/"+s.Key, true)
	time.Sleep(6 * time.Second)
	pub.Stop()
	rec := waitRecording(t, s, "complete", 10*time.Second, func(r recordingView) bool { return r.State == "complete" })
	if n := len(recordings(t, s, "")); n != 1 {
		t.Fatalf("%d recordings, want one across the reconnect", n)
	}
	_, pl := Get(t, s.HTTP+rec.Playlist)
	pts, _ := probeFrames(t, s.HTTP+rec.Playlist, 60*time.Second)
	discs := bytes.Count(pl, []byte("#EXT-X-DISCONTINUITY\n"))
	t.Logf("one recording: %.2f s, %d frames decoded, discontinuities %d", rec.Duration, len(pts), discs)
	if rec.Duration < 10 || float64(len(pts)) < 0.95*30*rec.Duration {
		t.Errorf("recording of %.2f s with %d frames: both sessions should be in it", rec.Duration, len(pts))
	}
	if discs != 1 {
		t.Errorf("%d discontinuities, want 1 where the publisher returned:\n%s", discs, pl)
	}
	// A killed publisher's last audio and video end apart: where the
	// returning one starts, a hole of a few frames may be left, which hls.js
	// steps over.
	playVOD(t, s.HTTP+rec.Playlist, rec.Duration, 0.25)
}

// Retention removes the oldest recordings once a channel's exceed record-max-mb.
func TestRecordingRetention(t *testing.T) {
	needTools(t, "ffmpeg")
	file := sharedSource(t, Source{Width: 640, Height: 360, FPS: 30, Seconds: 4, Bitrate: "3M"}) // ~1.5 MB
	s := StartServer(t, "--record", "all", "--record-max-mb", "2")
	var ids []string
	for i := range 3 {
		pub := Publish(t, file, s.RTMP+"/"+s.Key, false)
		if exited, err := pub.Wait(30 * time.Second); !exited || err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		rec := waitRecording(t, s, "complete", 10*time.Second, func(r recordingView) bool {
			return r.State == "complete" && !strings.Contains(strings.Join(ids, " "), r.ID)
		})
		ids = append(ids, rec.ID)
		time.Sleep(1100 * time.Millisecond) // recordings are named by their start second
	}
	left := recordings(t, s, "")
	var total int64
	var names []string
	for _, r := range left {
		total += r.Size
		names = append(names, r.ID)
	}
	t.Logf("recorded %v; left %v (%d bytes)", ids, names, total)
	if total > 2<<20 || len(left) == 0 || left[0].ID != ids[2] || strings.Contains(strings.Join(names, " "), ids[0]) {
		t.Fatalf("after three recordings with a 2 MiB limit: left %v (%d bytes), want the newest kept and the oldest gone", names, total)
	}
}

// A full disk stops recording with a clear log line and a metric; the live
// stream plays on.
func TestRecordingDiskFull(t *testing.T) {
	needTools(t, "ffmpeg")
	if os.Getuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	mnt := mountTmpfs(t, "64m")
	s := StartServer(t, "--record", "all", "--data-dir", filepath.Join(mnt, "data"))
	liveStream(t, s)
	waitRecording(t, s, "being recorded", 20*time.Second, func(r recordingView) bool { return r.Duration >= 2 })
	fillDisk(t, mnt)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.Logs(), "recording stopped; the live stream goes on") {
		if time.Now().After(deadline) {
			t.Fatal("no log line saying recording stopped on a full disk")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(s.Logs(), "the disk is full") {
		t.Errorf("the log does not say the disk is full:\n%s", tail(s.Logs(), 3000))
	}
	if n := s.metricSum(t, "onair_recording_failures_total", `reason="disk_full"`); n != 1 {
		t.Errorf("onair_recording_failures_total{reason=\"disk_full\"} = %v, want 1", n)
	}
	playlistAdvances(t, s.HTTP, 10*time.Second)
}

// onair killed while recording: the next start on the same data directory
// finishes the recording from what reached the disk, and it plays.
func TestRecordingSurvivesCrash(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	file := sharedSource(t, Source{Width: 320, Height: 240, FPS: 30, Seconds: 6})
	dir := t.TempDir()
	s := StartServer(t, "--record", "all", "--data-dir", dir)
	pub := Publish(t, file, s.RTMP+"/"+s.Key, true)
	live := waitRecording(t, s, "of a few seconds", 20*time.Second, func(r recordingView) bool { return r.Duration >= 4 })
	s.cmd.Process.Kill() // no shutdown: the recording is left as it was
	<-s.done
	pub.Kill()

	s = StartServer(t, "--record", "all", "--data-dir", dir)
	rec := recordings(t, s, "")[0]
	t.Logf("recovered %s: %.2f s (%.2f s listed before the crash), %q", rec.ID, rec.Duration, live.Duration, rec.Stopped)
	if rec.ID != live.ID || rec.State != "complete" || rec.Duration < live.Duration || rec.Stopped == "" {
		t.Fatalf("after the crash: %+v", rec)
	}
	if !strings.Contains(s.Logs(), "recording interrupted by a stop of onair, recovered") {
		t.Error("no log line about the recovered recording")
	}
	video, _ := probeFrames(t, s.HTTP+rec.Playlist, 30*time.Second)
	// The recording ends with the last part written, in decode order: when
	// that ends on a P-frame, the B-frames shown before it were in the part
	// lost, so up to three frames (x264's B-frames) are missing before the last.
	if n := len(video); n > 2 && video[n-1]-video[n-2] <= 4.25/30 {
		video = video[:n-1]
	}
	checkContinuous(t, "video", video, 1.0/30)
	if float64(len(video)) < 30*rec.Duration-2 {
		t.Errorf("%d frames decoded from %.2f s", len(video), rec.Duration)
	}
}
