package web

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func newTestHandler(t *testing.T) http.Handler {
	t.Helper()
	return New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPages(t *testing.T) {
	h := newTestHandler(t)
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/", `src="/static/directory.js"`, 200},
		{"/watch/main", `data-channel="main"`, 200},
		{"/watch/a_b-9", `<title>a_b-9 · onair</title>`, 200},
		{"/watch/Main", "Not found", 404},
		{"/watch/" + strings.Repeat("a", 65), "Not found", 404},
		{"/watch/%3Cscript%3E", "Not found", 404},
		{"/nope", "Not found", 404},
		{"/watch/", "Not found", 404},
		{"/replay/main/20261201T100000Z-0123abcd", `data-recording="20261201T100000Z-0123abcd"`, 200},
		{"/replay/main/20261201T100000Z-0123abcd/x", "Not found", 404},
		{"/replay/main/20261201T100000Z-0123ABCD", "Not found", 404},
		{"/replay/Main/20261201T100000Z-0123abcd", "Not found", 404},
	} {
		rec := get(t, h, "GET", tc.path, nil)
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, rec.Code, tc.status)
		}
		body := rec.Body.String()
		if !strings.Contains(body, tc.want) {
			t.Errorf("%s: body lacks %q", tc.path, tc.want)
		}
		checkPageHeaders(t, tc.path, rec.Result().Header)
		checkNoInlineScript(t, tc.path, body)
	}
	if rec := get(t, h, "GET", "/watch/main/", nil); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/watch/main" {
		t.Errorf("/watch/main/: %d %q, want a redirect to /watch/main", rec.Code, rec.Header().Get("Location"))
	}
	if rec := get(t, h, "HEAD", "/watch/main", nil); rec.Code != 200 {
		t.Errorf("HEAD /watch/main: %d", rec.Code)
	}
}

func checkPageHeaders(t *testing.T, path string, hdr http.Header) {
	t.Helper()
	if got := hdr.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", path, got)
	}
	if got := hdr.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", path, got)
	}
	if hdr.Get("Referrer-Policy") == "" {
		t.Errorf("%s: no Referrer-Policy", path)
	}
	csp := hdr.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		d = strings.TrimSpace(d)
		name, value, _ := strings.Cut(d, " ")
		directives[name] = value
	}
	script := directives["script-src"]
	if !strings.HasPrefix(script, "'self'") || strings.Contains(script, "'unsafe-inline'") || strings.Contains(script, "'unsafe-eval'") {
		t.Errorf("%s: script-src %q allows more than self (and the CDN)", path, script)
	}
	if HasEmbeddedHLS() && script != "'self'" {
		t.Errorf("%s: script-src %q, want only 'self' when hls.js is embedded", path, script)
	}
	// Without the embedded copy, the page may load exactly one file from the
	// CDN (pinned by SRI), never anything else its host serves.
	if !HasEmbeddedHLS() && script != "'self' "+hlsCDNURL {
		t.Errorf("%s: script-src %q, want 'self' and only the pinned hls.js file %s", path, script, hlsCDNURL)
	}
	if got := hdr.Get("X-Frame-Options"); got != "SAMEORIGIN" || directives["frame-ancestors"] != "'self'" {
		t.Errorf("%s: X-Frame-Options %q, frame-ancestors %q; want SAMEORIGIN and 'self'", path, got, directives["frame-ancestors"])
	}
	for name, want := range map[string]string{
		"default-src": "'none'",
		"media-src":   "'self' blob:",
		"connect-src": "'self' ws: wss:",
		"img-src":     "'self' data:",
		"worker-src":  "'self' blob:",
		"style-src":   "'self'",
	} {
		if directives[name] != want {
			t.Errorf("%s: CSP %s %q, want %q", path, name, directives[name], want)
		}
	}
}

var scriptTag = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)

func checkNoInlineScript(t *testing.T, path, body string) {
	t.Helper()
	for _, m := range scriptTag.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("%s: inline script %q", path, m[0])
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+\s*=`).MatchString(body) {
		t.Errorf("%s: inline event handler attribute in page", path)
	}
}

func TestStatic(t *testing.T) {
	h := newTestHandler(t)
	for path, ctype := range map[string]string{
		"/static/watch.js":     "text/javascript; charset=utf-8",
		"/static/directory.js": "text/javascript; charset=utf-8",
		"/static/chat.js":      "text/javascript; charset=utf-8",
		"/static/chat-ui.js":   "text/javascript; charset=utf-8",
		"/static/health-ui.js": "text/javascript; charset=utf-8",
		"/static/player.js":    "text/javascript; charset=utf-8",
		"/static/common.js":    "text/javascript; charset=utf-8",
		"/static/app.css":      "text/css; charset=utf-8",
		"/static/favicon.svg":  "image/svg+xml",
	} {
		rec := get(t, h, "GET", path, nil)
		if rec.Code != 200 {
			t.Errorf("%s: status %d", path, rec.Code)
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != ctype {
			t.Errorf("%s: Content-Type %q, want %q", path, got, ctype)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Errorf("%s: no ETag", path)
			continue
		}
		if rec := get(t, h, "GET", path, map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified {
			t.Errorf("%s: revalidation answered %d, want 304", path, rec.Code)
		}
	}
	for _, path := range []string{"/static/nope.js", "/static/", "/static/vendor/", "/static/vendor/README.md"} {
		if rec := get(t, h, "GET", path, nil); rec.Code != 404 {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
	}
}

func TestWatchPageLoadsHLS(t *testing.T) {
	h := newTestHandler(t)
	body := get(t, h, "GET", "/watch/main", nil).Body.String()
	if HasEmbeddedHLS() {
		if !strings.Contains(body, `<script src="/static/vendor/hls.min.js" defer>`) {
			t.Errorf("watch page does not load the embedded hls.js:\n%s", body)
		}
		if rec := get(t, h, "GET", "/static/vendor/hls.min.js", nil); rec.Code != 200 || rec.Body.Len() < 100000 {
			t.Errorf("embedded hls.min.js: %d, %d bytes", rec.Code, rec.Body.Len())
		}
	} else {
		want := `<script src="` + hlsCDNURL + `" defer integrity="` + hlsCDNIntegrity + `" crossorigin="anonymous">`
		if !strings.Contains(body, want) {
			t.Errorf("watch page does not load hls.js from the CDN with SRI; want %s in\n%s", want, body)
		}
	}
}

// TestHLSVersionPinned keeps HLSVersion, the npm lockfile and (when
// vendored) the embedded file and the CDN integrity hash in agreement.
func TestHLSVersionPinned(t *testing.T) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, "../package.json", &pkg)
	if got := pkg.Dependencies["hls.js"]; got != HLSVersion {
		t.Errorf("package.json pins hls.js %q, web.HLSVersion is %q", got, HLSVersion)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	readJSON(t, "../package-lock.json", &lock)
	if got := lock.Packages["node_modules/hls.js"].Version; got != HLSVersion {
		t.Errorf("package-lock.json locks hls.js %q, web.HLSVersion is %q", got, HLSVersion)
	}
	if !HasEmbeddedHLS() {
		t.Log("hls.js not vendored (run scripts/vendor-hls); the CDN fallback is in use")
		return
	}
	if v, err := files.ReadFile("static/vendor/hls.version"); err == nil && strings.TrimSpace(string(v)) != HLSVersion {
		t.Fatalf("vendored hls.js is %s, web.HLSVersion is %s: run npm ci && scripts/vendor-hls", strings.TrimSpace(string(v)), HLSVersion)
	}
	data, err := files.ReadFile(vendoredHLS)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum384(data)
	if got := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); got != hlsCDNIntegrity {
		t.Errorf("integrity of the vendored hls.min.js is %s, hlsCDNIntegrity says %s", got, hlsCDNIntegrity)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestNewLogsWhenHLSNotEmbedded(t *testing.T) {
	var buf strings.Builder
	New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	logged := strings.Contains(buf.String(), "hls.js is not embedded")
	if logged == HasEmbeddedHLS() {
		t.Errorf("embedded=%v but warning logged=%v: %s", HasEmbeddedHLS(), logged, buf.String())
	}
}
