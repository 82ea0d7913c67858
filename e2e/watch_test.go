package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/web"
)

// browser is one headless Chromium shared by the pages of a test.
type browser struct {
	t     *testing.T
	alloc context.Context
	root  context.Context // the first tab; starting it starts the browser

	mu      sync.Mutex
	dialogs []string // JavaScript dialogs any page opened
	console []string // errors and exceptions any page reported
}

// chromiumPath finds Debian's chromium (or another Chromium/Chrome) or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium); skipping the browser tests")
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1200, 675),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, alloc: alloc, root: root}
}

// page opens a tab in its own browser context (separate storage, like another viewer).
func (b *browser) page(name string) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	console := chromedp.Console(ctx)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, name+": "+string(ev.Type)+": "+ev.Message)
			b.mu.Unlock()
			// A test only confirms what it asked for; dismiss anything else.
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				b.mu.Lock()
				b.console = append(b.console, fmt.Sprintf("%s: %s: %s (%s)", name, m.Type, m.Text, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return ctx
}

func (b *browser) Dialogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.dialogs)
}

func (b *browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.console)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript boolean expression until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s (%s; last error %v); page state: %s", what, timeout, expr, err, hookState(ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hookState is the watch page's test hook as JSON, for failure messages.
func hookState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__onair ? {...window.__onair, errors: (window.__onair.errors||[]).slice(-5)} : null)`))
	if err != nil {
		return err.Error()
	}
	return s
}

func currentTime(t *testing.T, ctx context.Context) float64 {
	return eval[float64](t, ctx, `document.getElementById("video").currentTime`)
}

// screenshot writes a PNG to docs/screenshots when ONAIR_SCREENSHOTS=1, else into the test's temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 675)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	time.Sleep(300 * time.Millisecond) // let the layout settle
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := t.TempDir()
	if os.Getenv("ONAIR_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "docs", "screenshots")
		os.MkdirAll(dir, 0o755)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s (%d KB)", path, len(buf)/1024)
}

func channelState(t *testing.T, s *Server, name string) (state string, viewers int) {
	t.Helper()
	resp, body := Get(t, s.HTTP+"/api/v1/channels/"+name)
	if resp.StatusCode != 200 {
		return fmt.Sprint(resp.StatusCode), 0
	}
	var ch struct {
		State   string `json:"state"`
		Viewers int    `json:"viewers"`
	}
	json.Unmarshal(body, &ch)
	return ch.State, ch.Viewers
}

func waitState(t *testing.T, s *Server, name, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, _ := channelState(t, s, name)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: API state %q, want %q within %s", name, st, want, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWatchPage drives the pages in headless Chromium against a real onair
// fed by ffmpeg: playback at low latency, chat between two viewers (with an
// XSS attempt and a moderator's delete), the directory, and a publisher that
// stops and comes back.
func TestWatchPage(t *testing.T) {
	needTools(t, "ffmpeg")
	if !web.HasEmbeddedHLS() {
		t.Fatal("hls.js is not embedded: run `npm ci && scripts/vendor-hls` before the tests (the CDN fallback needs the internet)")
	}
	b := newBrowser(t)
	const secret = "watch-test-secret"
	const admin = "watch-test-admin"
	srv := StartServer(t, "--secret", secret, "--admin-token", admin, "--reconnect-grace", "3s")
	src := EncodeFLV(t, Source{Width: 640, Height: 360, FPS: 30, Seconds: 10, GOP: 30})
	pub := Publish(t, src, srv.RTMP+"/"+srv.Key, true)
	WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 20*time.Second)
	waitState(t, srv, "main", "live", 10*time.Second)

	// --- A viewer opens the watch page and it plays at low latency.
	viewer := b.page("viewer")
	do(t, viewer, chromedp.Navigate(srv.HTTP+"/watch/main"))
	waitJS(t, viewer, "watch page plays", `window.__onair && window.__onair.state === "playing"`, 30*time.Second)
	if engine := eval[string](t, viewer, `window.__onair.engine`); engine != "hls.js" {
		t.Errorf("engine %q, want hls.js", engine)
	}
	start := currentTime(t, viewer)
	startWall := time.Now()
	var latencies, wall []float64
	stalls := 0
	prevState := "playing"
	for currentTime(t, viewer) < start+8 {
		if time.Since(startWall) > 30*time.Second {
			t.Fatalf("currentTime advanced from %.2f to %.2f in 30 s; page: %s", start, currentTime(t, viewer), hookState(viewer))
		}
		var h struct {
			State          string   `json:"state"`
			Latency        *float64 `json:"latency"`
			WallClockDelay *float64 `json:"wallClockDelay"`
		}
		json.Unmarshal([]byte(eval[string](t, viewer, `JSON.stringify(window.__onair)`)), &h)
		if h.Latency != nil {
			latencies = append(latencies, *h.Latency)
		}
		if h.WallClockDelay != nil {
			wall = append(wall, *h.WallClockDelay)
		}
		if h.State == "buffering" && prevState != "buffering" {
			stalls++
		}
		prevState = h.State
		time.Sleep(250 * time.Millisecond)
	}
	advanced := currentTime(t, viewer) - start
	t.Logf("video currentTime advanced %.2f s in %.2f s of wall time", advanced, time.Since(startWall).Seconds())
	var fatal []json.RawMessage
	json.Unmarshal([]byte(eval[string](t, viewer, `JSON.stringify(window.__onair.fatal)`)), &fatal)
	if len(fatal) > 0 {
		t.Errorf("hls.js reported fatal errors: %s", fatal)
	}
	t.Logf("hls.js errors (non-fatal included): %s", eval[string](t, viewer, `JSON.stringify(window.__onair.errors)`))
	lat := summarize(latencies)
	t.Logf("delay behind live (hls.js latency estimate, target %.2f s): %s; wall-clock delay (program date-time): %s; stalls after start: %d",
		eval[float64](t, viewer, `window.__onair.targetLatency || 0`), lat, summarize(wall), stalls)
	if len(latencies) == 0 {
		t.Errorf("the page never reported a delay behind live")
	} else if last := latencies[len(latencies)-1]; last > 10 {
		t.Errorf("delay behind live is %.1f s; the low-latency player should stay within a few seconds", last)
	}
	badge := eval[string](t, viewer, `document.getElementById("live-badge").textContent`)
	if !strings.HasPrefix(badge, "LIVE") {
		t.Errorf("live badge %q, want LIVE…", badge)
	}

	// --- The directory lists the live channel with its viewer count.
	dir := b.page("directory")
	do(t, dir, chromedp.Navigate(srv.HTTP+"/"))
	waitJS(t, dir, "directory lists main as live with viewers",
		`(() => { const li = document.querySelector('#live li[data-channel="main"]');
		  return !!li && /^[1-9][0-9]* viewers?$/.test(li.querySelector(".viewers").textContent) &&
		         li.querySelector(".since").textContent.startsWith("live for"); })()`, 15*time.Second)
	t.Logf("directory card: %q", eval[string](t, dir, `document.querySelector('#live li[data-channel="main"]').innerText`))

	// --- Chat: two viewers, one of them a moderator.
	joinChat(t, viewer, "alice")
	token := chat.SignModeratorToken([]byte(secret), "main", time.Hour)
	mod := b.page("moderator")
	do(t, mod, chromedp.Navigate(srv.HTTP+"/watch/main#mod="+token))
	waitJS(t, mod, "token leaves the address bar", `location.hash === "" && sessionStorage.getItem("onair.mod.main") !== null`, 10*time.Second)
	joinChat(t, mod, "bob")
	waitJS(t, mod, "moderator tools on", `document.body.classList.contains("is-mod")`, 10*time.Second)
	if eval[bool](t, viewer, `document.body.classList.contains("is-mod") || document.querySelector(".mod-btn") !== null`) {
		t.Errorf("a viewer without a token sees moderator controls")
	}

	sendChat(t, viewer, "hello from alice")
	waitMessage(t, mod, "alice", "hello from alice")
	sendChat(t, mod, "hi alice, welcome")
	waitMessage(t, viewer, "bob", "hi alice, welcome")

	const xss = `<img src=x onerror=alert(1)>`
	sendChat(t, viewer, xss)
	for _, p := range []context.Context{viewer, mod} {
		waitMessage(t, p, "alice", xss)
		if n := eval[int](t, p, `document.querySelectorAll("#messages img, #messages script").length`); n != 0 {
			t.Errorf("chat message became %d HTML element(s)", n)
		}
	}
	time.Sleep(500 * time.Millisecond) // an onerror would have fired by now
	if d := b.Dialogs(); len(d) > 0 {
		t.Errorf("a page opened dialogs: %q", d)
	}

	// The moderator deletes alice's first message; it disappears for alice too.
	do(t, mod, chromedp.Click(chromedp.CSS(`#messages li.msg[data-name="alice"] .mod-btn[data-action="delete"]`)))
	gone := `![...document.querySelectorAll("#messages li.msg .text")].some(e => e.textContent === "hello from alice")`
	waitJS(t, viewer, "deleted message removed on the viewer's page", gone, 10*time.Second)
	waitJS(t, mod, "deleted message removed on the moderator's page", gone, 10*time.Second)

	// Screenshots: the watch page playing with chat, and the directory.
	sendChat(t, mod, "the moderator removed a message")
	waitMessage(t, viewer, "bob", "the moderator removed a message")
	waitJS(t, viewer, "still playing", `window.__onair.state === "playing"`, 10*time.Second)
	screenshot(t, viewer, "watch.png")
	waitJS(t, dir, "directory counts both viewers",
		`/^[2-9][0-9]* viewers$/.test(document.querySelector('#live li[data-channel="main"] .viewers').textContent)`, 15*time.Second)
	screenshot(t, dir, "directory.png")

	// --- The publisher stops: the page says offline; it comes back: the page plays again by itself.
	pub.Stop()
	waitJS(t, viewer, "page shows offline", `window.__onair.state === "offline" && !document.getElementById("overlay").hidden`, 30*time.Second)
	offlineText := eval[string](t, viewer, `document.getElementById("overlay-title").textContent + " / " + document.getElementById("live-badge").textContent`)
	t.Logf("offline page: %q", offlineText)
	waitJS(t, dir, "directory lists main as offline", `!!document.querySelector('#offline li[data-channel="main"]')`, 15*time.Second)

	back := time.Now()
	Publish(t, src, srv.RTMP+"/"+srv.Key, true)
	waitJS(t, viewer, "page plays again after the publisher returns", `window.__onair.state === "playing"`, 40*time.Second)
	resumed := currentTime(t, viewer)
	waitJS(t, viewer, "video advances after the return", fmt.Sprintf(`document.getElementById("video").currentTime > %f`, resumed+3), 20*time.Second)
	t.Logf("playing again %.1f s after the publisher returned", time.Since(back).Seconds())

	// --- An administrator takes the stream down: the page says so, with the reason.
	const reason = "test takedown: policy"
	req, _ := http.NewRequest("POST", srv.HTTP+"/api/v1/channels/main/takedown",
		strings.NewReader(`{"reason":"`+reason+`","ban_seconds":60}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("takedown: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("takedown: HTTP %d", resp.StatusCode)
	}
	waitJS(t, viewer, "page shows the takedown and its reason",
		fmt.Sprintf(`window.__onair.state === "taken_down" && document.getElementById("overlay-text").textContent.includes(%q)`, reason), 15*time.Second)

	if c := b.Console(); len(c) > 0 {
		t.Logf("browser console errors and warnings:\n%s", strings.Join(c, "\n"))
		for _, line := range c {
			if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "exception") {
				t.Errorf("page error: %s", line)
			}
		}
	}
}

func joinChat(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	waitJS(t, ctx, "chat connected", `window.__onair.chatState === "open"`, 10*time.Second)
	// A remembered name joins by itself; otherwise, or to change it, use the form.
	if !eval[bool](t, ctx, `!document.getElementById("name-form").hidden`) {
		do(t, ctx, chromedp.Click(chromedp.ID("change-name")))
	}
	eval[bool](t, ctx, `(document.getElementById("name-input").value = "") === ""`)
	do(t, ctx, chromedp.SendKeys(chromedp.ID("name-input"), name+"\r"))
	waitJS(t, ctx, "joined chat as "+name,
		fmt.Sprintf(`!document.getElementById("send-form").hidden && document.getElementById("me").textContent === %q && localStorage.getItem("onair.name") === %q`, "as "+name, name),
		10*time.Second)
}

func sendChat(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	do(t, ctx,
		chromedp.Focus(chromedp.ID("chat-input")),
		chromedp.SendKeys(chromedp.ID("chat-input"), text+"\r"),
	)
}

func waitMessage(t *testing.T, ctx context.Context, name, text string) {
	t.Helper()
	expr := fmt.Sprintf(`[...document.querySelectorAll("#messages li.msg")].some(li =>
		li.querySelector(".who").textContent === %q && li.querySelector(".text").textContent === %q)`, name, text)
	waitJS(t, ctx, fmt.Sprintf("message %q from %s shown", text, name), expr, 10*time.Second)
}

func summarize(v []float64) string {
	if len(v) == 0 {
		return "no samples"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf("n=%d min %.2f s, median %.2f s, max %.2f s, last %.2f s", len(s), s[0], s[len(s)/2], s[len(s)-1], v[len(v)-1])
}
