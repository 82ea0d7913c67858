package segmenter

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/onairhq/onair/ingest"
)

// Origin serves /hls/{channel}/{object} with the headers a CDN edge needs:
// per-kind Content-Type and Cache-Control, ETag and Last-Modified with 304s,
// HEAD and Range, gzip for playlists, and CORS for browser players.
type Origin struct {
	seg *Segmenter
}

var objectRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,128}\.(m3u8|mp4|ts)$`)

const (
	immutable   = "public, max-age=86400, immutable"
	notFoundTTL = "public, max-age=1"
	noStore     = "no-store"
)

// ServeHTTP implements http.Handler.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Age, Date, Content-Length, Content-Range, ETag, Last-Modified")

	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, If-None-Match, If-Modified-Since, Accept-Encoding")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Cache-Control", "public, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
		o.seg.metrics.request(0, http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		o.fail(w, 0, http.StatusMethodNotAllowed)
		return
	}

	channel, name, ok := splitPath(r.URL.Path)
	if !ok {
		o.fail(w, 0, http.StatusNotFound)
		return
	}
	k, ok := classify(name)
	if !ok {
		o.fail(w, 0, http.StatusNotFound)
		return
	}
	st := o.seg.lookup(channel)
	if st == nil {
		o.fail(w, k, http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	rq := request{name: name, kind: k}
	if k == kindMediaPlaylist {
		rq.msn, rq.part, rq.skip = q.Get("_HLS_msn"), q.Get("_HLS_part"), q.Get("_HLS_skip")
	}
	obj, err := st.get(r.Context(), rq)
	switch {
	case err == nil:
	case errors.Is(err, errBadRequest):
		o.fail(w, k, http.StatusBadRequest)
		return
	case errors.Is(err, errTimeout):
		o.seg.metrics.holdTimeouts.Add(1)
		h.Set("Retry-After", "1")
		o.fail(w, k, http.StatusServiceUnavailable)
		return
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		o.seg.metrics.request(k, 499)
		return // the client went away
	default:
		o.fail(w, k, http.StatusNotFound)
		return
	}
	o.serve(w, r, st, obj)
}

// splitPath accepts "/hls/{channel}/{object}" and "{channel}/{object}".
func splitPath(p string) (channel, name string, ok bool) {
	p = strings.TrimPrefix(p, "/hls/")
	p = strings.TrimPrefix(p, "/")
	channel, name, ok = strings.Cut(p, "/")
	if !ok || !ingest.ValidChannelName(channel) || !objectRE.MatchString(name) {
		return "", "", false
	}
	return channel, name, true
}

func (o *Origin) fail(w http.ResponseWriter, k kind, code int) {
	h := w.Header()
	if code == http.StatusNotFound {
		h.Set("Cache-Control", notFoundTTL)
	} else {
		h.Set("Cache-Control", noStore)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(http.StatusText(code) + "\n"))
	o.seg.metrics.request(k, code)
}

func (o *Origin) serve(w http.ResponseWriter, r *http.Request, st *stream, obj *object) {
	h := w.Header()
	h.Set("Content-Type", obj.ctype)
	h.Set("Cache-Control", st.cacheControl(obj))
	body, etag := obj.body, obj.etag
	if obj.kind.isPlaylist() {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			zw.Write(body)
			zw.Close()
			body = buf.Bytes()
			etag = strings.TrimSuffix(etag, `"`) + `-gz"` // a different representation
			h.Set("Content-Encoding", "gzip")
		}
		// A playlist can change within the second Last-Modified resolves to, so
		// only its ETag may validate it.
		r.Header.Del("If-Modified-Since")
		r.Header.Del("If-Range")
	}
	h.Set("ETag", etag)
	o.seg.metrics.request(obj.kind, http.StatusOK)
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", obj.modTime, bytes.NewReader(body))
	o.seg.metrics.bytesOut.Add(uint64(cw.n))
}

// cacheControl picks Cache-Control per object kind (see HLS-ORIGIN.md).
func (st *stream) cacheControl(obj *object) string {
	if !obj.kind.isPlaylist() {
		return immutable
	}
	st.mu.Lock()
	target := max(st.target, 1)
	st.mu.Unlock()
	if obj.blocking && !obj.final {
		// The answer to one _HLS_msn/_HLS_part never changes and its MSN is
		// never reused on this channel (numbers continue across broadcasts).
		return "public, max-age=" + strconv.Itoa(max(6, 6*target))
	}
	if st.lowLat || obj.final {
		return "public, max-age=1"
	}
	return "public, max-age=" + strconv.Itoa(max(1, target/2))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.TrimSpace(coding) != "*" {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// countingWriter counts body bytes for the metrics.
type countingWriter struct {
	http.ResponseWriter
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += n
	return n, err
}
