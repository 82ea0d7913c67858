package recording

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var fileRE = regexp.MustCompile(`^(index\.m3u8|init\.mp4|[0-9]{6}\.m4s|thumbnail\.jpg)$`)

// Handler serves recordings at /vod/{channel}/{id}/{file}: the playlist, the
// init segment and the segments. Segments never change once listed, so they
// are cacheable for a year; a final playlist for a day (a CDN can hold them
// all); a live one (EVENT) for a second. Hidden recordings answer 404.
func (r *Recorder) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		notFound := func() {
			// Briefly: a thumbnail or a segment may exist in a moment.
			w.Header().Set("Cache-Control", "public, max-age=1")
			http.NotFound(w, req)
		}
		parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/vod/"), "/")
		if len(parts) != 3 || !fileRE.MatchString(parts[2]) || strings.Contains(req.URL.RawPath, "%") {
			notFound()
			return
		}
		m, err := r.Get(parts[0], parts[1])
		file := parts[2]
		if err != nil || m.State == StateHidden || !r.listed(m, file) {
			notFound() // a segment still being written is not served
			return
		}
		f, err := os.Open(filepath.Join(r.opts.Dir, m.Channel, m.ID, file))
		if err != nil {
			notFound()
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			notFound()
			return
		}
		h := w.Header()
		switch {
		case file == playlistFile && m.State == StateRecording:
			h.Set("Cache-Control", "public, max-age=1")
		case file == playlistFile, file == thumbnailFile:
			h.Set("Cache-Control", "public, max-age=86400")
		default:
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		switch file {
		case playlistFile:
			h.Set("Content-Type", "application/vnd.apple.mpegurl")
		case thumbnailFile:
			h.Set("Content-Type", "image/jpeg")
		default:
			h.Set("Content-Type", "video/mp4")
		}
		h.Set("Access-Control-Allow-Origin", "*")
		http.ServeContent(w, req, file, st.ModTime(), f)
	})
}

// listed reports whether a media file of m is complete (listed in its playlist).
func (r *Recorder) listed(m Meta, file string) bool {
	if file == playlistFile || file == initFile || file == thumbnailFile || m.State != StateRecording {
		return true
	}
	var i int
	for _, c := range file[:6] {
		i = i*10 + int(c-'0')
	}
	return i < m.Segments
}
