package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The player matrix: onair's live HLS played in the web players sites embed,
// each in its pinned release (package.json) or, with ONAIR_PLAYERS_DIR, in
// whatever releases that directory holds (scripts/test-players-latest).
const (
	// playersDirEnv names a node_modules-shaped directory holding hls.js,
	// hls.js-1.6, shaka-player and video.js; the default is the repository's
	// node_modules (npm ci).
	playersDirEnv = "ONAIR_PLAYERS_DIR"

	playWindow    = 20 * time.Second // how long each player plays, from its first frame
	maxStart      = 3 * time.Second  // page load to playback, at most
	minAdvance    = 0.95             // share of the wall time the picture must advance
	startPatience = 15 * time.Second // how long to wait for a late start, to report it
)

// playerCase is one player configuration playing one HLS variant.
type playerCase struct {
	name    string // subtest name
	label   string // for the summary table
	variant string // onair --hls-variant
	player  string // players.js: hlsjs, shaka or videojs
	pkg     string // npm package directory under the players directory
	config  string // lowlatency or default
}

// playerMatrix is the matrix. hls.js's default configuration has
// lowLatencyMode on too; the two hls.js cases differ in what the page passes
// ({lowLatencyMode: true} or nothing), as sites do both.
var playerMatrix = []playerCase{
	{"hlsjs-latest-lowlatency", "hls.js latest, lowLatencyMode: true", "lowlatency", "hlsjs", "hls.js", "lowlatency"},
	{"hlsjs-latest-default", "hls.js latest, default config", "lowlatency", "hlsjs", "hls.js", "default"},
	{"shaka-lowlatency", "Shaka Player, streaming.lowLatencyMode", "lowlatency", "shaka", "shaka-player", "lowlatency"},
	{"videojs-vhs", "video.js with its VHS", "lowlatency", "videojs", "video.js", "default"},
	{"hlsjs-1.6-default", "hls.js 1.6, default config", "lowlatency", "hlsjs", "hls.js-1.6", "default"},
	{"hlsjs-latest-default-fmp4", "hls.js latest, default config", "fmp4", "hlsjs", "hls.js", "default"},
	{"hlsjs-latest-default-mpegts", "hls.js latest, default config", "mpegts", "hlsjs", "hls.js", "default"},
}

// playState is window.__play of testdata/players/players.js.
type playState struct {
	Version       string            `json:"version"`
	Engine        string            `json:"engine"`
	FirstFrameMs  *float64          `json:"firstFrameMs"`
	StartMs       *float64          `json:"startMs"`
	Wall          float64           `json:"wall"`
	Played        float64           `json:"played"`
	Jumped        float64           `json:"jumped"`
	Seeks         int               `json:"seeks"`
	Waits         int               `json:"waits"`
	LongestStall  float64           `json:"longestStall"`
	Behind        []float64         `json:"behind"`
	BehindMissing int               `json:"behindMissing"`
	MinRate       *float64          `json:"minRate"`
	MaxRate       *float64          `json:"maxRate"`
	DroppedFrames int               `json:"droppedFrames"`
	TotalFrames   int               `json:"totalFrames"`
	Holes         []bufferHole      `json:"holes"`
	Errors        []json.RawMessage `json:"errors"`
	Fatal         []json.RawMessage `json:"fatal"`
	Exceptions    []string          `json:"exceptions"`
	LibMs         *float64          `json:"libMs"`
}

// bufferHole is a gap between two buffered ranges of one SourceBuffer.
type bufferHole struct {
	Type  string  `json:"type"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// playerResult is one row of the summary table.
type playerResult struct {
	c       playerCase
	version string
	st      playState
	failed  bool
}

// playersDir is where the players' dist files come from.
func playersDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(playersDirEnv)
	if dir == "" {
		dir = filepath.Join("..", "node_modules")
	}
	for _, pkg := range []string{"hls.js", "hls.js-1.6", "shaka-player", "video.js"} {
		if _, err := os.Stat(filepath.Join(dir, pkg, "package.json")); err != nil {
			t.Fatalf("player %s missing in %s (%v): run npm ci, or point %s at a directory holding it", pkg, dir, err, playersDirEnv)
		}
	}
	return dir
}

// packageVersion reads the version of an installed npm package.
func packageVersion(t *testing.T, dir, pkg string) string {
	t.Helper()
	var p struct {
		Version string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(dir, pkg, "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &p)
	}
	if err != nil {
		t.Fatalf("read the version of %s: %v", pkg, err)
	}
	return p.Version
}

// playerDistPath is what the player site serves from the players directory:
// only the files the players ship for browsers.
var playerDistPath = regexp.MustCompile(`^/lib/(hls\.js|hls\.js-1\.6|shaka-player|video\.js)/dist/`)

// servePlayerSite serves the player page and the players' files from a server
// of its own, as a site does: the page's origin is not onair's. It answers on
// "localhost" while onair answers on 127.0.0.1, so the stream is cross-origin
// and cross-site for the page.
func servePlayerSite(t *testing.T, dir string) string {
	t.Helper()
	lib := http.StripPrefix("/lib/", http.FileServer(http.Dir(dir)))
	mux := http.NewServeMux()
	mux.Handle("/lib/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !playerDistPath.MatchString(r.URL.Path) {
			http.NotFound(w, r)
			return
		}
		lib.ServeHTTP(w, r)
	}))
	mux.Handle("/", http.FileServer(http.Dir(filepath.Join("testdata", "players"))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
}

// newPlayerBrowser starts a headless Chromium with the flags a CI job gives
// it, and no more (no autoplay or throttling overrides): the page must play as
// it would for a visitor, muted autoplay included.
func newPlayerBrowser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 720),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitLivePlaylist waits until the first media playlist that the multivariant
// playlist names is live and lists at least n segments. It relies on nothing but
// index.m3u8 and the URIs in it.
func waitLivePlaylist(t *testing.T, index string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	media := ""
	for {
		if media == "" {
			if body, ok := fetch200(index); ok {
				media = firstMediaPlaylist(index, body)
			}
		}
		if media != "" {
			if body, ok := fetch200(media); ok && strings.Count(body, "#EXTINF:") >= n && isLive(body) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no media playlist with %d segments within %s (media playlist %q)", index, n, timeout, media)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// isLive reports whether a media playlist is a live one: not ended, and
// for LL-HLS with a preload hint (an ended broadcast's playlist, still
// served for a while, has neither).
func isLive(pl string) bool {
	return !strings.Contains(pl, "#EXT-X-ENDLIST") &&
		(!strings.Contains(pl, "#EXT-X-PART-INF") || strings.Contains(pl, "#EXT-X-PRELOAD-HINT"))
}

// firstMediaPlaylist is the URL of the first variant in a multivariant
// playlist, or base itself when the playlist is a media playlist.
func firstMediaPlaylist(base, body string) string {
	if !strings.Contains(body, "#EXT-X-STREAM-INF") {
		return base
	}
	b, err := url.Parse(base)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			u, err := url.Parse(l)
			if err != nil {
				return ""
			}
			return b.ResolveReference(u).String()
		}
	}
	return ""
}

func fetch200(u string) (string, bool) {
	resp, err := http.Get(u)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err == nil && resp.StatusCode == http.StatusOK
}

// liveSource is what every player test publishes: 720p30 H.264 with
// libx264's defaults (B-frames, as OBS), a keyframe every second, AAC audio,
// long enough that no loop of the file falls inside a test.
var liveSource = Source{Width: 1280, Height: 720, FPS: 30, Seconds: 40, GOP: 30, Bitrate: "3M", Video: true, Audio: true}

// TestPlayerMatrix plays a live broadcast from the real onair in each web
// player, in headless Chromium, for 20 s: each must start within 3 s of the
// page load, advance at least 95 % of the wall time after its first frame and
// report no fatal error; how far each plays behind live is logged.
func TestPlayerMatrix(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := playersDir(t)
	chromiumPath(t)
	site := servePlayerSite(t, dir)
	src := sharedSource(t, liveSource)
	var results []playerResult
	for _, c := range playerMatrix {
		version := packageVersion(t, dir, c.pkg)
		t.Run(c.name, func(t *testing.T) {
			var st playState
			// Deferred, so a player that stops the subtest still gets its row.
			defer func() { results = append(results, playerResult{c: c, version: version, st: st, failed: t.Failed()}) }()
			playLive(t, site, src, c, &st)
		})
	}
	t.Log("player matrix (" + playersSource() + "):\n" + matrixTable(results))
}

// TestLowLatencyPlayersAt24fps plays a 24 fps broadcast in the low-latency
// players. No part of whole 24 fps frames is both within a 201 ms PART-TARGET
// and at least 85 % of it, so the window fits its PART-TARGET to five frames;
// the players must play it as they play 30 fps.
func TestLowLatencyPlayersAt24fps(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := playersDir(t)
	chromiumPath(t)
	site := servePlayerSite(t, dir)
	src24 := liveSource
	src24.FPS, src24.GOP = 24, 24
	src := sharedSource(t, src24)
	for _, c := range playerMatrix {
		if c.config != "lowlatency" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var st playState
			playLive(t, site, src, c, &st)
		})
	}
}

func playersSource() string {
	if d := os.Getenv(playersDirEnv); d != "" {
		return "players from " + playersDirEnv + "=" + d
	}
	return "players pinned in package.json"
}

// playLive runs one player against a fresh onair and publisher and asserts
// the matrix's criteria; st receives what the page measured.
func playLive(t *testing.T, site, src string, c playerCase, st *playState) {
	srv := StartServer(t, "--hls-variant", c.variant)
	pub := Publish(t, src, srv.RTMP+"/"+srv.Key, true)
	index := srv.HTTP + "/hls/main/index.m3u8"
	waitLivePlaylist(t, index, 3, 30*time.Second)

	ctx, read := openPlayer(t, site, index, c)

	// Wait for the start (beyond the 3 s allowed, to report a late one), then
	// let it play for the window, watching the publisher.
	deadline := time.Now().Add(startPatience)
	for *st = read(); st.StartMs == nil && len(st.Fatal) == 0 && time.Now().Before(deadline); *st = read() {
		time.Sleep(250 * time.Millisecond)
	}
	if st.StartMs != nil {
		for st.Wall < playWindow.Seconds() && len(st.Fatal) == 0 {
			if exited, err := pub.Wait(0); exited {
				t.Fatalf("the publisher stopped during the test (%v): %s", err, pub.Output())
			}
			time.Sleep(500 * time.Millisecond)
			*st = read()
		}
	}

	t.Logf("%s %s (%s), variant %s: %s", c.player, st.Version, st.Engine, c.variant, describePlay(*st))
	if len(st.Errors) > 0 {
		t.Logf("player errors (the last %d): %s", min(len(st.Errors), 10), joinRaw(st.Errors[max(0, len(st.Errors)-10):]))
	}
	if len(st.Exceptions) > 0 {
		t.Logf("page exceptions: %q", st.Exceptions)
	}
	if len(st.Holes) > 0 {
		var hs []string
		for _, h := range st.Holes {
			hs = append(hs, fmt.Sprintf("%s %.3f–%.3f (%.0f ms)", h.Type, h.Start, h.End, 1000*(h.End-h.Start)))
		}
		t.Logf("holes between buffered ranges: %s", strings.Join(hs, "; "))
	}

	if st.StartMs == nil || *st.StartMs > float64(maxStart.Milliseconds()) {
		reqs, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__requests())`))
		t.Logf("start: player script loaded at %s; first requests to onair [path, start ms, end ms]: %s", msOrNever(st.LibMs), reqs)
	}
	switch {
	case st.StartMs == nil:
		t.Errorf("never started: no frame had played %s after the page loaded (first frame presented: %s)", startPatience, msOrNever(st.FirstFrameMs))
	case *st.StartMs > float64(maxStart.Milliseconds()):
		t.Errorf("started %.2f s after the page loaded, want at most %s", *st.StartMs/1000, maxStart)
	}
	if st.StartMs != nil && st.Wall > 0 {
		if adv := st.Played / st.Wall; adv < minAdvance {
			t.Errorf("advanced %.2f s of media in %.2f s of wall time after its first frame (%.1f %%), want at least %.0f %%",
				st.Played, st.Wall, 100*adv, 100*minAdvance)
		}
	}
	if len(st.Fatal) > 0 {
		t.Errorf("fatal errors: %s", joinRaw(st.Fatal))
	}
	if c.player == "videojs" && st.Engine != "vhs" {
		t.Errorf("video.js played with %q, not its VHS", st.Engine)
	}
	if st.StartMs != nil && len(st.Behind) == 0 {
		t.Errorf("the player never mapped its position to a date (EXT-X-PROGRAM-DATE-TIME): distance behind live unknown")
	}
}

// openPlayer opens the player page of c on index in a new headless browser;
// read returns what the page measured so far.
func openPlayer(t *testing.T, site, index string, c playerCase) (ctx context.Context, read func() playState) {
	ctx = newPlayerBrowser(t)
	q := url.Values{"player": {c.player}, "lib": {c.pkg}, "config": {c.config}, "src": {index}}
	if err := chromedp.Do(ctx, chromedp.Navigate(site+"/index.html?"+q.Encode())); err != nil {
		t.Fatalf("open the player page: %v", err)
	}
	return ctx, func() playState {
		var st playState
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__play)`))
		if err == nil {
			err = json.Unmarshal([]byte(s), &st)
		}
		if err != nil {
			t.Fatalf("read the page's measurements: %v", err)
		}
		return st
	}
}

func describePlay(st playState) string {
	if st.StartMs == nil {
		return fmt.Sprintf("never started (first frame presented: %s)", msOrNever(st.FirstFrameMs))
	}
	adv := 0.0
	if st.Wall > 0 {
		adv = 100 * st.Played / st.Wall
	}
	rate := "?"
	if st.MinRate != nil && st.MaxRate != nil {
		rate = fmt.Sprintf("%.2f–%.2f", *st.MinRate, *st.MaxRate)
	}
	return fmt.Sprintf("started %.2f s after page load (first frame %s); advanced %.2f s in %.2f s (%.1f %%), jumps %.2f s, seeks %d, stalls %d, longest stall %.2f s, playback rate %s, frames dropped %d of %d; behind live: %s (%d samples without a date)",
		*st.StartMs/1000, msOrNever(st.FirstFrameMs), st.Played, st.Wall, adv, st.Jumped, st.Seeks, st.Waits, st.LongestStall, rate, st.DroppedFrames, st.TotalFrames, summarize(st.Behind), st.BehindMissing)
}

func msOrNever(ms *float64) string {
	if ms == nil {
		return "never"
	}
	return fmt.Sprintf("%.2f s", *ms/1000)
}

func joinRaw(v []json.RawMessage) string {
	s := make([]string, len(v))
	for i, m := range v {
		s[i] = string(m)
	}
	return strings.Join(s, "; ")
}

// matrixTable renders one line per player.
func matrixTable(rs []playerResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %-10s %-8s %-8s %-8s %-22s %-6s %-5s %s\n", "player", "variant", "version", "start", "advance", "behind live med/max", "stalls", "fatal", "result")
	for _, r := range rs {
		start, adv, behind := "never", "-", "-"
		if r.st.StartMs != nil {
			start = fmt.Sprintf("%.2f s", *r.st.StartMs/1000)
			if r.st.Wall > 0 {
				adv = fmt.Sprintf("%.1f %%", 100*r.st.Played/r.st.Wall)
			}
		}
		if len(r.st.Behind) > 0 {
			s := slices.Clone(r.st.Behind)
			slices.Sort(s)
			behind = fmt.Sprintf("%.2f / %.2f s", s[len(s)/2], s[len(s)-1])
		}
		result := "pass"
		if r.failed {
			result = "FAIL"
		}
		fmt.Fprintf(&b, "%-40s %-10s %-8s %-8s %-8s %-22s %-6d %-5d %s\n", r.c.label, r.c.variant, r.version, start, adv, behind, r.st.Waits, len(r.st.Fatal), result)
	}
	return b.String()
}

// TestCommandLinePlayersReadEveryVariant reads a live broadcast of every HLS
// variant with ffprobe and with ffplay: both must read it without an error.
func TestCommandLinePlayersReadEveryVariant(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe", "ffplay")
	src := sharedSource(t, liveSource)
	for _, variant := range []string{"lowlatency", "fmp4", "mpegts"} {
		t.Run(variant, func(t *testing.T) {
			srv := StartServer(t, "--hls-variant", variant)
			Publish(t, src, srv.RTMP+"/"+srv.Key, true)
			index := srv.HTTP + "/hls/main/index.m3u8"
			waitLivePlaylist(t, index, 3, 30*time.Second)
			t.Run("ffprobe", func(t *testing.T) { ffprobeLive(t, index) })
			t.Run("ffplay-nodisp", func(t *testing.T) { ffplayLive(t, index, false) })
			t.Run("ffplay-display", func(t *testing.T) { ffplayLive(t, index, true) })
		})
	}
}

// ffprobeLive reads 6 s of the live stream, decoding every frame.
func ffprobeLive(t *testing.T, index string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-read_intervals", "%+6",
		"-show_entries", "stream=codec_type,codec_name,width,height:frame=media_type", "-of", "json", index)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe %s: %v\n%s", index, err, tail(stderr.String(), 4000))
	}
	var probe struct {
		Streams []struct {
			CodecType string `json:"codec_type"`
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
		Frames []struct {
			MediaType string `json:"media_type"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("parse ffprobe output: %v", err)
	}
	var streams []string
	for _, s := range probe.Streams {
		streams = append(streams, fmt.Sprintf("%s %s %dx%d", s.CodecType, s.CodecName, s.Width, s.Height))
	}
	frames := map[string]int{}
	for _, f := range probe.Frames {
		frames[f.MediaType]++
	}
	t.Logf("ffprobe: streams %q; frames decoded in 6 s: %d video, %d audio", streams, frames["video"], frames["audio"])
	if !slices.Contains(streams, "video h264 1280x720") || !slices.Contains(streams, "audio aac 0x0") {
		t.Errorf("ffprobe streams %q, want H.264 1280x720 and AAC", streams)
	}
	// 6 s at 30 fps and 48 kHz AAC (1024 samples a frame), less a margin for where the read starts and stops.
	if frames["video"] < 150 || frames["audio"] < 240 {
		t.Errorf("ffprobe decoded %d video and %d audio frames in 6 s of stream, want about 180 and 280", frames["video"], frames["audio"])
	}
}

// ffplayStatus is ffplay's status line (-stats): the master clock, then which
// clocks it compares, the difference, and frames dropped (fd).
var ffplayStatus = regexp.MustCompile(`^\s*(\S+)\s+(?:A-V|M-V|M-A)?\s*:\s*\S+\s+fd=\s*(\d+)`)

// ffplayLive plays the live stream for a while and checks from ffplay's
// status lines that its clock advanced, and that it printed no error. A live
// playlist never ends, so ffplay -autoexit would play forever: it is stopped
// with SIGTERM after the run time. With display, SDL's dummy video driver
// stands in for a screen (with -nodisp ffplay disables video, so it reads
// only the audio of a stream with a separate audio rendition).
func ffplayLive(t *testing.T, index string, display bool) {
	const run = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	args := []string{"-hide_banner", "-loglevel", "error", "-stats", "-autoexit"}
	if !display {
		args = append(args, "-nodisp")
	}
	cmd := exec.CommandContext(ctx, "ffplay", append(args, index)...)
	cmd.Env = append(os.Environ(), "SDL_AUDIODRIVER=dummy", "SDL_VIDEODRIVER=dummy")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	if ctx.Err() == nil {
		t.Errorf("ffplay stopped by itself after %s (%v); a live stream should play on", took.Round(time.Millisecond), err)
	}
	var clocks []float64
	var errs []string
	drops := ""
	for _, line := range strings.FieldsFunc(string(out), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if m := ffplayStatus.FindStringSubmatch(line); m != nil {
			if v, err := strconv.ParseFloat(m[1], 64); err == nil && !math.IsNaN(v) {
				clocks = append(clocks, v)
				drops = m[2]
			}
			continue
		}
		errs = append(errs, line)
	}
	if len(errs) > 0 {
		t.Errorf("ffplay reported errors:\n%s", strings.Join(errs, "\n"))
	}
	if len(clocks) < 2 {
		t.Fatalf("ffplay never played in %s:\n%s", took.Round(time.Millisecond), tail(string(out), 4000))
	}
	played := clocks[len(clocks)-1] - clocks[0]
	t.Logf("ffplay (display %v): its clock advanced %.2f s in %s; frames dropped: %s", display, played, took.Round(time.Millisecond), drops)
	if played < run.Seconds()-3 {
		t.Errorf("ffplay's clock advanced %.2f s in %s, want at least %.0f s", played, run, run.Seconds()-3)
	}
}
