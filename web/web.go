// Package web serves onair's browser pages: the channel directory at "/",
// the watch page (player and chat) at "/watch/{channel}", and their static
// assets under "/static/". The pages are plain HTML, CSS and JavaScript
// modules embedded in the binary; they read everything they show from the
// JSON API under /api/v1/, play video from /hls/ and talk to /chat/.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

// HLSVersion is the hls.js version the pages are written against. It must
// match the version pinned in package.json and package-lock.json; the CDN
// fallback loads exactly this version.
const HLSVersion = "1.7.4"

// hlsCDNHost and hlsCDNURL locate the public copy of hls.js used when the
// binary was built without a vendored one (see scripts/vendor-hls).
const (
	hlsCDNHost = "https://cdn.jsdelivr.net"
	hlsCDNURL  = hlsCDNHost + "/npm/hls.js@" + HLSVersion + "/dist/hls.min.js"
	// hlsCDNIntegrity is the Subresource Integrity hash of dist/hls.min.js in
	// the npm tarball of HLSVersion (openssl dgst -sha384 -binary | base64).
	hlsCDNIntegrity = "sha384-p9vgU/7IYJWd3I4STrtqxqR/2cAQlhIX7D/HrTnIMEjjcUox165b7se7sxmm3zDg"
)

const vendoredHLS = "static/vendor/hls.min.js"

//go:embed static templates
var files embed.FS

var channelName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// recordingID is the form of a recording's id (package recording names them).
var recordingID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// HasEmbeddedHLS reports whether hls.js was vendored into web/static/vendor
// when this binary was built. Without it the watch page loads hls.js from a
// public CDN.
func HasEmbeddedHLS() bool {
	_, err := fs.Stat(files, vendoredHLS)
	return err == nil
}

// Options configures the handler returned by New.
type Options struct {
	// Logger receives start-up warnings and request errors; nil means slog.Default().
	Logger *slog.Logger
}

type asset struct {
	data  []byte
	etag  string
	ctype string
}

type handler struct {
	log      *slog.Logger
	mux      *http.ServeMux
	assets   map[string]asset // keyed by path below static/
	pages    *template.Template
	hlsSrc   string
	hlsSRI   string
	csp      string
	embedded bool
}

type pageData struct {
	Channel      string
	Recording    string // a recording's id, on the replay page
	HLSSrc       string
	HLSIntegrity string
}

// New returns the handler for the pages and their assets. Mount it at "/";
// the /hls/, /chat/ and /api/ prefixes are served by other handlers.
func New(opts Options) http.Handler {
	h := &handler{log: opts.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.assets = loadAssets()
	h.pages = template.Must(template.ParseFS(files, "templates/*.html"))
	h.embedded = HasEmbeddedHLS()
	scriptSrc := "'self'"
	if h.embedded {
		h.hlsSrc = "/static/vendor/hls.min.js"
	} else {
		h.hlsSrc, h.hlsSRI = hlsCDNURL, hlsCDNIntegrity
		// The one file, not the CDN's whole host, which serves anyone's packages.
		scriptSrc += " " + hlsCDNURL
		h.log.Warn("web: hls.js is not embedded in this build; the watch page will load it from a public CDN. Run scripts/vendor-hls before go build to embed it",
			"hls_version", HLSVersion, "cdn", hlsCDNURL)
	}
	h.csp = strings.Join([]string{
		"default-src 'none'",
		"script-src " + scriptSrc,
		"style-src 'self'",
		"img-src 'self' data:",
		"media-src 'self' blob:",
		"connect-src 'self' ws: wss:",
		"worker-src 'self' blob:",
		"manifest-src 'self'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'self'",
	}, "; ")

	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /{$}", h.directory)
	h.mux.HandleFunc("GET /watch/{channel}", h.watch)
	h.mux.HandleFunc("GET /watch/{channel}/{$}", h.watchSlash)
	h.mux.HandleFunc("GET /replay/{channel}/{id}", h.replay)
	h.mux.HandleFunc("GET /static/{file...}", h.static)
	h.mux.HandleFunc("/", h.notFound)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

func loadAssets() map[string]asset {
	out := make(map[string]asset)
	_ = fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "text/plain; charset=utf-8"
		}
		out[strings.TrimPrefix(p, "static/")] = asset{
			data:  data,
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
			ctype: ctype,
		}
		return nil
	})
	return out
}

func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.ctype)
	hdr.Set("ETag", a.etag)
	// Revalidate every time: a 304 is cheap and an upgrade never leaves a
	// browser with a stale mix of modules.
	hdr.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.data))
}

func (h *handler) directory(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, "directory.html", pageData{})
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("channel")
	if !channelName.MatchString(name) {
		h.notFound(w, r)
		return
	}
	h.render(w, http.StatusOK, "watch.html", pageData{Channel: name, HLSSrc: h.hlsSrc, HLSIntegrity: h.hlsSRI})
}

// replay is the page of one recording; the recording itself comes from /vod/.
func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("channel"), r.PathValue("id")
	if !channelName.MatchString(name) || !recordingID.MatchString(id) {
		h.notFound(w, r)
		return
	}
	h.render(w, http.StatusOK, "replay.html", pageData{Channel: name, Recording: id, HLSSrc: h.hlsSrc, HLSIntegrity: h.hlsSRI})
}

func (h *handler) watchSlash(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("channel")
	if !channelName.MatchString(name) {
		h.notFound(w, r)
		return
	}
	http.Redirect(w, r, "/watch/"+name, http.StatusMovedPermanently)
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusNotFound, "notfound.html", pageData{})
}

func (h *handler) render(w http.ResponseWriter, status int, name string, data pageData) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, data); err != nil {
		h.log.Error("web: render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	// frame-ancestors' counterpart for browsers that predate it.
	hdr.Set("X-Frame-Options", "SAMEORIGIN")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
