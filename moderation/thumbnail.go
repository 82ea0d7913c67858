package moderation

import (
	"bytes"
	"net/http"
	"time"
)

// ThumbnailHandler serves the newest screened keyframe of a live channel as
// JPEG. Mount it on a pattern with a {name} wildcard, such as
// "GET /api/v1/channels/{name}/thumbnail.jpg". It answers 404 when the
// channel has no thumbnail (not live, not screened yet, or taken down), and
// sets Cache-Control: max-age=5, an ETag and Last-Modified; conditional and
// HEAD requests are handled by http.ServeContent.
func (m *Moderator) ThumbnailHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		m.mu.Lock()
		var img []byte
		var etag string
		var at time.Time
		if st := m.channels[name]; st != nil && st.thumb != nil {
			img, etag, at = st.thumb, st.thumbETag, st.thumbAt
		}
		m.mu.Unlock()
		h := w.Header()
		if img == nil {
			h.Set("Cache-Control", "no-store")
			http.Error(w, "no thumbnail", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", "image/jpeg")
		h.Set("Cache-Control", "public, max-age=5")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", at, bytes.NewReader(img))
	})
}
