package moderation

import (
	"bytes"
	"net/http"
	"time"
)

// thumbWait bounds how long a thumbnail request waits for a fresh frame to be
// decoded (without screeners) before it is answered with what there is.
const thumbWait = 2 * time.Second

// ThumbnailHandler serves the newest screened keyframe of a live channel as
// JPEG. Mount it on a pattern with a {name} wildcard, such as
// "GET /api/v1/channels/{name}/thumbnail.jpg". It answers 404 when the
// channel has no thumbnail (not live, not screened yet, or taken down), and
// sets Cache-Control: max-age=5, an ETag and Last-Modified; conditional and
// HEAD requests are handled by http.ServeContent.
//
// Without screeners, thumbnails are decoded on demand: a request that finds
// none, or one older than ThumbnailInterval, has the newest sampled keyframe
// decoded and waits for it (a fraction of a second; at most 2 s).
func (m *Moderator) ThumbnailHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		m.mu.Lock()
		var round <-chan struct{}
		if st := m.channels[name]; st != nil {
			round = m.askThumbLocked(st)
		}
		m.mu.Unlock()
		if round != nil {
			t := time.NewTimer(thumbWait)
			select {
			case <-round:
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
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
