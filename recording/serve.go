package recording

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var fileRE = regexp.MustCompile(`^(index\.m3u8|init\.mp4|[0-9]{6}\.m4s)$`)

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
		parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/vod/"), "/")
		if len(parts) != 3 || !fileRE.MatchString(parts[2]) || strings.Contains(req.URL.RawPath, "%") {
			http.NotFound(w, req)
			return
		}
		m, err := r.Get(parts[0], parts[1])
		if err != nil || m.State == StateHidden {
			http.NotFound(w, req)
			return
		}
		file := parts[2]
		path := filepath.Join(r.opts.Dir, m.Channel, m.ID, file)
		switch {
		case file == playlistFile && m.State == StateRecording:
			w.Header().Set("Cache-Control", "public, max-age=1")
		case file == playlistFile:
			w.Header().Set("Cache-Control", "public, max-age=86400")
		default:
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		if file == playlistFile {
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		} else {
			w.Header().Set("Content-Type", "video/mp4")
			if !r.listed(m, file) {
				http.NotFound(w, req) // a segment still being written is not served
				return
			}
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		f, err := os.Open(path)
		if err != nil {
			http.NotFound(w, req)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, file, st.ModTime(), f)
	})
}

// listed reports whether a media file of m is complete (listed in its playlist).
func (r *Recorder) listed(m Meta, file string) bool {
	if file == initFile || m.State != StateRecording {
		return true
	}
	var i int
	for _, c := range file[:6] {
		i = i*10 + int(c-'0')
	}
	return i < m.Segments
}
