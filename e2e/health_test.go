package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/health"
)

// healthReport fetches a channel's health with token; ok is false unless HTTP 200.
func healthReport(t *testing.T, s *Server, channel, token string) (health.Report, int) {
	t.Helper()
	var hdr []string
	if token != "" {
		hdr = []string{"Authorization", "Bearer " + token}
	}
	resp, body := Get(t, s.HTTP+"/api/v1/channels/"+channel+"/health", hdr...)
	var r health.Report
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("health of %s: %v: %s", channel, err, body)
		}
	}
	return r, resp.StatusCode
}

func warningCodes(r health.Report) []string {
	var out []string
	for _, w := range r.Warnings {
		out = append(out, w.Code)
	}
	slices.Sort(out)
	return out
}

func describeHealth(r health.Report) string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// TestStreamHealth publishes two streams with ffmpeg: one with the settings a
// streamer gets wrong (4 s keyframe interval, no audio, VBR that swings
// between noise and a plain picture, 15 fps) and one as OBS should send it
// (1 s keyframes, 30 fps, CBR-like 2.5 Mbit/s, AAC). Each fault must show as
// a warning in the API, in the log (once) and on the streamer's watch page;
// the good stream must get none. It also checks the API's refusals and
// `onair status`.
func TestStreamHealth(t *testing.T) {
	needTools(t, "ffmpeg")
	const secret = "health-e2e-secret-0123456789"
	const admin = "health-e2e-admin-0123456789"
	const badKey, goodKey, slowKey = "bad-key-0123456789", "good-key-0123456789", "slow-key-0123456789"
	srv := StartServer(t, "--secret", secret, "--admin-token", admin,
		"--channel", "bad:"+badKey, "--channel", "good:"+goodKey, "--channel", "slow:"+slowKey)

	bad := EncodeFLV(t, Source{Width: 480, Height: 270, FPS: 15, GOP: 60, Seconds: 24, Video: true,
		// 6 s of noise (CRF: several Mbit/s), 6 s of the plain test picture (a few hundred kbit/s).
		Extra: []string{"-vf", "noise=alls=20:allf=t:enable='lt(mod(t,12),6)'"}})
	good := EncodeFLV(t, Source{Width: 640, Height: 360, FPS: 30, GOP: 30, Seconds: 10, Video: true, Audio: true, Bitrate: "2500k"})
	Publish(t, bad, srv.RTMP+"/"+badKey, true)
	Publish(t, good, srv.RTMP+"/"+goodKey, true)
	// The good stream again, sent at 3/4 of real time: an encoder or upload that cannot keep up.
	publishSlow(t, good, srv.RTMP+"/"+slowKey, 0.75)
	waitState(t, srv, "bad", "live", 20*time.Second)
	waitState(t, srv, "good", "live", 20*time.Second)
	waitState(t, srv, "slow", "live", 20*time.Second)

	badMod := chat.SignModeratorToken([]byte(secret), "bad", time.Hour)
	goodMod := chat.SignModeratorToken([]byte(secret), "good", time.Hour)
	wantBad := []string{health.CodeBitrateSwings, health.CodeKeyframeInterval, health.CodeLowFrameRate, health.CodeNoAudio}

	// --- The API: the bad stream's warnings appear, each naming its OBS setting.
	var badRep health.Report
	deadline := time.Now().Add(90 * time.Second)
	for {
		r, status := healthReport(t, srv, "bad", badMod)
		if status != 200 {
			t.Fatalf("health of bad with its moderator token: HTTP %d", status)
		}
		codes := warningCodes(r)
		if r.MediaSeconds >= 20 && !slices.ContainsFunc(wantBad, func(c string) bool { return !slices.Contains(codes, c) }) {
			badRep = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad stream: warnings %v after %.0f s of media, want %v:\n%s", codes, r.MediaSeconds, wantBad, describeHealth(r))
		}
		time.Sleep(time.Second)
	}
	v := badRep.Video
	t.Logf("bad stream: keyframe interval %.2f/%.2f/%.2f s (min/avg/max), %.1f fps, video %.2f–%.2f Mbit/s (avg %.2f), audio %v, %d jumps, %d dropped, %.2f s late",
		v.KeyframeInterval.Min, v.KeyframeInterval.Avg, v.KeyframeInterval.Max, v.FPS, v.Bitrate.Min/1e6, v.Bitrate.Max/1e6, v.Bitrate.Avg/1e6,
		badRep.Audio, badRep.TimestampJumps, badRep.DroppedFrames, badRep.LateSeconds)
	for _, w := range badRep.Warnings {
		t.Logf("bad stream warning %s: %s", w.Code, w.Message)
		if !slices.Contains(wantBad, w.Code) {
			t.Errorf("bad stream: unexpected warning %s: %s", w.Code, w.Message)
		}
	}
	if v.KeyframeInterval.Max < 3.5 || v.KeyframeInterval.Max > 4.5 || v.FPS < 14 || v.FPS > 16 || badRep.Audio != nil {
		t.Errorf("bad stream figures off:\n%s", describeHealth(badRep))
	}
	for code, setting := range map[string]string{
		health.CodeKeyframeInterval: "Keyframe Interval to 1 s",
		health.CodeLowFrameRate:     "Common FPS Values",
		health.CodeNoAudio:          "Settings → Audio",
		health.CodeBitrateSwings:    "Rate Control: CBR",
	} {
		for _, w := range badRep.Warnings {
			if w.Code == code && !strings.Contains(w.Message, setting) {
				t.Errorf("%s does not name %q: %s", code, setting, w.Message)
			}
		}
	}

	// --- The good stream: figures as sent, and no warning at all.
	var goodRep health.Report
	deadline = time.Now().Add(60 * time.Second)
	for {
		r, status := healthReport(t, srv, "good", admin)
		if status != 200 {
			t.Fatalf("health of good with the admin token: HTTP %d", status)
		}
		if r.Judged && r.MediaSeconds >= 20 {
			goodRep = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("good stream not measured for 20 s:\n%s", describeHealth(r))
		}
		time.Sleep(time.Second)
	}
	g := goodRep.Video
	t.Logf("good stream: keyframe interval %.2f/%.2f/%.2f s, %.1f fps, video %.2f–%.2f Mbit/s (avg %.2f), audio %s %s %d kbit/s, %d jumps, %d dropped, %.2f s late",
		g.KeyframeInterval.Min, g.KeyframeInterval.Avg, g.KeyframeInterval.Max, g.FPS, g.Bitrate.Min/1e6, g.Bitrate.Max/1e6, g.Bitrate.Avg/1e6,
		goodRep.Audio.Codec, goodRep.Audio.Profile, goodRep.Audio.Bitrate/1000, goodRep.TimestampJumps, goodRep.DroppedFrames, goodRep.LateSeconds)
	if len(goodRep.Warnings) != 0 {
		t.Errorf("good stream got warnings:\n%s", describeHealth(goodRep))
	}
	if g.KeyframeInterval.Max > 1.1 || g.FPS < 29 || g.FPS > 31 || g.Profile != "High" || goodRep.Audio == nil || goodRep.Audio.Profile != "AAC-LC" {
		t.Errorf("good stream figures off:\n%s", describeHealth(goodRep))
	}

	// --- The slow stream: media falls behind the wall clock.
	deadline = time.Now().Add(60 * time.Second)
	for {
		r, _ := healthReport(t, srv, "slow", admin)
		if slices.Contains(warningCodes(r), health.CodeLateMedia) {
			t.Logf("slow stream (ffmpeg -readrate 0.75): %.2f s late after %.1f s of media; warnings %v", r.LateSeconds, r.MediaSeconds, warningCodes(r))
			if codes := warningCodes(r); len(codes) != 1 {
				t.Errorf("slow stream: warnings %v, want only %s", codes, health.CodeLateMedia)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow stream: no %s warning:\n%s", health.CodeLateMedia, describeHealth(r))
		}
		time.Sleep(time.Second)
	}

	// --- Refusals.
	for _, c := range []struct {
		name, channel, token string
		status               int
	}{
		{"no token", "bad", "", 401},
		{"wrong token", "bad", "wrong-token-0123456789", 401},
		{"moderator token of another channel", "bad", goodMod, 403},
		{"unknown channel", "nope", admin, 404},
	} {
		if _, status := healthReport(t, srv, c.channel, c.token); status != c.status {
			t.Errorf("%s: HTTP %d, want %d", c.name, status, c.status)
		}
	}

	// --- The log: each warning once, for the bad broadcast only.
	logs := srv.Logs()
	for _, code := range wantBad {
		n := 0
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "stream health") && strings.Contains(line, "code="+code) {
				n++
				if !strings.Contains(line, "channel=bad") || !strings.Contains(line, "level=WARN") {
					t.Errorf("log line: %s", line)
				}
			}
		}
		if n != 1 {
			t.Errorf("warning %s logged %d times, want once", code, n)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "stream health") && strings.Contains(line, "channel=good") {
			t.Errorf("the good stream was warned about in the log: %s", line)
		}
	}

	// --- onair status: one screen, and a refused token.
	out, err := exec.Command(onairBin, "status", "--url", srv.HTTP, "--admin-token", admin).CombinedOutput()
	if err != nil {
		t.Fatalf("onair status: %v\n%s", err, out)
	}
	t.Logf("onair status:\n%s", out)
	for _, want := range []string{"3 live", "bad", "good", "4 warning(s)", "ok", "bad: keyframe interval is", "slow: media arrives slower than real time"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("onair status lacks %q", want)
		}
	}
	if out, err := exec.Command(onairBin, "status", "--url", srv.HTTP, "--admin-token", "wrong-token-0123456789").CombinedOutput(); err == nil || !strings.Contains(string(out), "admin token was refused") {
		t.Errorf("onair status with a wrong token: %v: %s", err, out)
	}

	// --- The watch page: the streamer (moderator link) sees the panel and each warning; a viewer does not.
	b := newBrowser(t)
	streamer := b.page("streamer")
	do(t, streamer, chromedp.Navigate(srv.HTTP+"/watch/bad#mod="+badMod))
	for _, code := range wantBad {
		waitJS(t, streamer, "warning "+code+" on the streamer's page",
			fmt.Sprintf(`(() => { const li = document.querySelector('#health-warnings li[data-code=%q]');
			  return !!li && !document.getElementById("health").hidden && li.textContent.includes("Settings →"); })()`, code), 20*time.Second)
	}
	t.Logf("streamer's panel:\n%s", eval[string](t, streamer, `document.getElementById("health").innerText`))
	owner := b.page("admin")
	do(t, owner, chromedp.Navigate(srv.HTTP+"/watch/good#admin="+admin))
	waitJS(t, owner, "good stream: panel without warnings",
		`!document.getElementById("health").hidden && window.__onair.health && window.__onair.health.state === "judged" &&
		 document.querySelectorAll("#health-warnings li").length === 0 && document.getElementById("health-status").textContent.startsWith("No problems")`, 20*time.Second)
	if h := eval[string](t, owner, `location.hash`); h != "" {
		t.Errorf("the admin token stayed in the address bar: %q", h)
	}
	viewer := b.page("viewer")
	do(t, viewer, chromedp.Navigate(srv.HTTP+"/watch/bad"))
	waitJS(t, viewer, "viewer's page plays", `window.__onair && window.__onair.state === "playing"`, 30*time.Second)
	if eval[bool](t, viewer, `!document.getElementById("health").hidden || !!window.__onair.health`) {
		t.Errorf("a viewer without a token sees the health panel")
	}
	if c := b.Console(); len(c) > 0 {
		for _, line := range c {
			if strings.Contains(line, "exception") || strings.Contains(line, "Content Security Policy") {
				t.Errorf("page error: %s", line)
			}
		}
	}
}

// publishSlow publishes file looped at rate times real time (ffmpeg -readrate).
func publishSlow(t *testing.T, file, url string, rate float64) *Publisher {
	t.Helper()
	p := &Publisher{done: make(chan struct{})}
	p.cmd = exec.Command("ffmpeg", "-hide_banner", "-loglevel", "warning", "-readrate", fmt.Sprint(rate),
		"-stream_loop", "-1", "-i", file, "-c", "copy", "-f", "flv", url)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.out}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Kill)
	return p
}

// TestClusterHealth: any web node answers a channel's health; the node
// publishing it measures it (the request is passed on with its token).
func TestClusterHealth(t *testing.T) {
	needTools(t, "ffmpeg")
	const admin = "e2e-cluster-health-admin-0123"
	const secret = "e2e-cluster-health-secret-0123"
	src := sharedSource(t, Source{Width: 320, Height: 180, FPS: 30, Seconds: 30, Video: true, Audio: true})
	rurl := clusterRedis(t)
	a := startNode(t, rurl, "all", "--admin-token", admin, "--secret", secret)
	b := startNode(t, rurl, "origin,web", "--admin-token", admin, "--secret", secret, "--channel", "main:"+a.Key)
	if _, status := healthReport(t, b, "main", admin); status != 409 {
		t.Errorf("before the publisher: HTTP %d from node B, want 409", status)
	}
	Publish(t, src, a.RTMP+"/"+a.Key, true)
	mod := chat.SignModeratorToken([]byte(secret), "main", time.Hour)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, status := healthReport(t, b, "main", mod)
		if status == 200 && r.Judged {
			if r.Video == nil || r.Video.FPS < 29 || len(r.Warnings) != 0 {
				t.Errorf("health through node B:\n%s", describeHealth(r))
			}
			t.Logf("node B answered for node A: %.1f fps, keyframes every %.2f s, %d warning(s)", r.Video.FPS, r.Video.KeyframeInterval.Max, len(r.Warnings))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B: HTTP %d, report %s", status, describeHealth(r))
		}
		time.Sleep(500 * time.Millisecond)
	}
	other := chat.SignModeratorToken([]byte(secret), "elsewhere", time.Hour)
	if _, status := healthReport(t, b, "main", other); status != 403 {
		t.Errorf("another channel's moderator through node B: HTTP %d, want 403", status)
	}
	if _, status := healthReport(t, b, "main", ""); status != 401 {
		t.Errorf("no token through node B: HTTP %d, want 401", status)
	}
}
