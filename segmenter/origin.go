package segmenter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/onairhq/onair/ingest"
)

// Origin serves /hls/{channel}/{object} with the headers a CDN edge needs:
// per-kind Content-Type and Cache-Control, ETag and Last-Modified with 304s,
// HEAD and Range, gzip for playlists, and CORS for browser players. Anything
// a cache key could be busted with (an unknown query parameter, an escaped
// path) is refused with 400 before any work.
type Origin struct {
	seg *Segmenter
}

const (
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

	if strings.IndexByte(r.URL.RawPath, '%') >= 0 || strings.IndexByte(r.URL.EscapedPath(), '%') >= 0 {
		o.fail(w, 0, http.StatusBadRequest) // no name of ours needs escaping
		return
	}
	channel, objName, ok := splitPath(r.URL.Path)
	if !ok {
		o.fail(w, 0, http.StatusNotFound)
		return
	}
	n, ok := parseName(objName)
	if !ok {
		o.fail(w, 0, http.StatusNotFound)
		return
	}
	rq, ok := o.parseQuery(n.kind, r.URL.RawQuery)
	if !ok {
		o.fail(w, n.kind, http.StatusBadRequest)
		return
	}
	win := o.seg.lookup(channel)
	if win == nil {
		o.fail(w, n.kind, http.StatusNotFound)
		return
	}
	switch n.kind {
	case kindMultivariant:
		o.serveMultivariant(w, r, win)
	case kindMediaPlaylist:
		pl, err := win.waitPlaylist(r.Context(), rq)
		if err != nil {
			o.failWith(w, n.kind, err)
			return
		}
		o.servePlaylist(w, r, n.kind, pl, o.playlistCache(rq, pl, win))
	default:
		if n.ts != o.seg.cfg.mpegts {
			o.fail(w, n.kind, http.StatusNotFound)
			return
		}
		obj, err := win.findMedia(r.Context(), n)
		if err != nil {
			o.failWith(w, n.kind, err)
			return
		}
		o.serveMedia(w, r, channel, n, objName, obj)
	}
}

// splitPath accepts "/hls/{channel}/{object}" and "{channel}/{object}".
func splitPath(p string) (channel, object string, ok bool) {
	p = strings.TrimPrefix(p, "/hls/")
	p = strings.TrimPrefix(p, "/")
	channel, object, ok = strings.Cut(p, "/")
	if !ok || !ingest.ValidChannelName(channel) || strings.IndexByte(object, '/') >= 0 {
		return "", "", false
	}
	return channel, object, true
}

// parseQuery accepts only the LL-HLS directives, only on a low-latency media
// playlist, each at most once and well-formed.
func (o *Origin) parseQuery(k kind, raw string) (playlistRequest, bool) {
	var rq playlistRequest
	if raw == "" {
		return rq, true
	}
	if k != kindMediaPlaylist || !o.seg.cfg.lowLatency {
		return rq, false
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return rq, false
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return rq, false
		}
		v := vals[0]
		switch key {
		case "_HLS_msn":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || v[0] == '+' {
				return rq, false
			}
			rq.blocking, rq.msn = true, n
		case "_HLS_part":
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil || v[0] == '+' {
				return rq, false
			}
			rq.hasPart, rq.part = true, int(n)
		case "_HLS_skip":
			if v != "YES" && v != "v2" {
				return rq, false
			}
			rq.skip = true
		default:
			return rq, false
		}
	}
	if rq.hasPart && !rq.blocking {
		return rq, false // _HLS_part without _HLS_msn
	}
	return rq, true
}

func (o *Origin) failWith(w http.ResponseWriter, k kind, err error) {
	switch {
	case errors.Is(err, errBadRequest):
		o.fail(w, k, http.StatusBadRequest)
	case errors.Is(err, errTimeout):
		o.seg.metrics.holdTimeouts.Add(1)
		w.Header().Set("Retry-After", "1")
		o.fail(w, k, http.StatusServiceUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		o.seg.metrics.request(k, 499) // the client went away
	default:
		o.fail(w, k, http.StatusNotFound)
	}
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

// playlistCache picks the media playlist's Cache-Control (see HLS-ORIGIN.md).
func (o *Origin) playlistCache(rq playlistRequest, pl *rendered, win *window) string {
	c := &o.seg.cfg
	switch {
	case win.isEnded():
		return "public, max-age=1"
	case rq.blocking:
		// The answer to one _HLS_msn/_HLS_part never changes and its MSN is
		// never reused on this channel (numbers continue across broadcasts).
		return "public, max-age=" + strconv.Itoa(6*c.targetSecs)
	case c.lowLatency:
		return "public, max-age=1"
	}
	return "public, max-age=" + strconv.Itoa(max(1, c.targetSecs/2))
}

func (o *Origin) serveMultivariant(w http.ResponseWriter, r *http.Request, win *window) {
	pl, err := win.waitMultivariant(r.Context())
	if err != nil {
		o.failWith(w, kindMultivariant, err)
		return
	}
	o.servePlaylist(w, r, kindMultivariant, pl, "public, max-age=2")
}

func (o *Origin) servePlaylist(w http.ResponseWriter, r *http.Request, k kind, pl *rendered, cache string) {
	h := w.Header()
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	h.Set("Cache-Control", cache)
	h.Set("Vary", "Accept-Encoding")
	body, etag := pl.body, pl.etag
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = pl.gzipped(o.seg.gzip)
		etag = strings.TrimSuffix(etag, `"`) + `-gz"` // a different representation
		h.Set("Content-Encoding", "gzip")
	}
	// A playlist can change within the second Last-Modified resolves to, so
	// only its ETag may validate it; ranges of a playlist make no sense.
	r.Header.Del("If-Modified-Since")
	r.Header.Del("If-Range")
	r.Header.Del("Range")
	h.Set("ETag", etag)
	o.send(w, r, k, pl.modTime, body, nil, len(body))
}

func (o *Origin) serveMedia(w http.ResponseWriter, r *http.Request, channel string, n name, objName string, obj *object) {
	h := w.Header()
	switch {
	case n.ts:
		h.Set("Content-Type", "video/mp2t")
	case obj.r.audioOnly:
		h.Set("Content-Type", "audio/mp4")
	default:
		h.Set("Content-Type", "video/mp4")
	}
	// URIs are unique per broadcast, so media never changes; it lives no
	// longer than the window plus the linger, so a takedown empties caches soon.
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(o.seg.cfg.mediaAge)+", immutable")
	h.Set("ETag", `"`+objName+`"`)
	// Tags a CDN can purge by (Fastly's Surrogate-Key, Cloudflare's
	// Cache-Tag): the channel, and the broadcast's objects alone.
	tags := "onair-" + channel + " onair-" + channel + "-" + n.token
	h.Set("Surrogate-Key", tags)
	h.Set("Cache-Tag", strings.ReplaceAll(tags, " ", ","))
	if strings.IndexByte(r.Header.Get("Range"), ',') >= 0 {
		// Several ranges would be answered as multipart, bigger than the
		// object itself: send the whole object instead.
		r.Header.Del("Range")
	}
	o.send(w, r, n.kind, obj.created, nil, obj.chunks, obj.size)
}

// send answers with body (or chunks) through http.ServeContent, which does
// HEAD, conditional requests and single ranges.
func (o *Origin) send(w http.ResponseWriter, r *http.Request, k kind, mod time.Time, body []byte, chunks [][]byte, size int) {
	var rs io.ReadSeeker
	if chunks != nil {
		rs = &chunkReader{chunks: chunks, size: int64(size)}
	} else {
		rs = bytes.NewReader(body)
	}
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", mod, rs)
	o.seg.metrics.request(k, cw.status())
	o.seg.metrics.bytesOut.Add(uint64(cw.n))
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

// chunkReader reads a segment's parts as one object without copying them.
type chunkReader struct {
	chunks [][]byte
	size   int64
	off    int64
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	n := 0
	pos := int64(0)
	for _, ch := range c.chunks {
		end := pos + int64(len(ch))
		if c.off < end && n < len(p) {
			k := copy(p[n:], ch[c.off-pos:])
			n += k
			c.off += int64(k)
		}
		pos = end
		if n == len(p) {
			break
		}
	}
	return n, nil
}

func (c *chunkReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.size
	default:
		return 0, errors.New("chunkReader: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("chunkReader: negative position")
	}
	c.off = offset
	return offset, nil
}

// countingWriter counts body bytes and remembers the status for the metrics.
type countingWriter struct {
	http.ResponseWriter
	n    int
	code int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += n
	return n, err
}

// ReadFrom keeps the response's own io.ReaderFrom (and its pooled copy
// buffer) reachable through the wrapper: without it every media answer
// would allocate a copy buffer.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := io.Copy(c.ResponseWriter, r)
	c.n += int(n)
	return n, err
}

func (c *countingWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}
