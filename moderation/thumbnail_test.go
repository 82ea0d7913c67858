package moderation

import (
	"bytes"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// thumbServer serves m's thumbnails the way the API mounts them.
func thumbServer(t *testing.T, m *Moderator) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/channels/{name}/thumbnail.jpg", m.ThumbnailHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestThumbnailsOnDemand: without screeners a broadcast start decodes
// nothing and starts no process; a thumbnail request has the newest keyframe
// decoded by the pool, at most once per ThumbnailInterval, and the pool's
// one process serves every decode.
func TestThumbnailsOnDemand(t *testing.T) {
	// Not looped: every keyframe shows a different picture.
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=7", ingest.CodecH264, 30, 30)
	if n := len(ffmpegChildren(t)); n != 0 {
		t.Skipf("%d ffmpeg children already running", n)
	}
	h := newHub()
	opts := DefaultOptions()
	opts.ThumbnailInterval = 2 * time.Second
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	srv := thumbServer(t, m)
	get := func() (string, int, []byte) {
		resp, err := http.Get(srv.URL + "/api/v1/channels/od/thumbnail.jpg")
		if err != nil {
			t.Error(err)
			return "", 0, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.Header.Get("ETag"), resp.StatusCode, body
	}
	type req struct {
		at     time.Duration
		etag   string
		status int
		took   time.Duration
	}
	var reqs []req
	var procsBefore = -1
	var thumbBefore bool
	next := 500 * time.Millisecond
	play(t, m, h, c, "od", 0, func(el time.Duration) {
		if el < next || el > 6800*time.Millisecond {
			return
		}
		if procsBefore < 0 {
			// The broadcast has run 0.5 s: its first keyframe is sampled, not decoded.
			procsBefore = len(ffmpegChildren(t))
			_, _, thumbBefore = m.Thumbnail("od")
		}
		next += 1500 * time.Millisecond
		t0 := time.Now()
		etag, status, body := get()
		reqs = append(reqs, req{el, etag, status, time.Since(t0)})
		if status == 200 {
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
			if err != nil || cfg.Width != 320 || cfg.Height != 180 {
				t.Errorf("thumbnail: %dx%d, %v; want 320x180", cfg.Width, cfg.Height, err)
			}
		}
	})
	if procsBefore != 0 || thumbBefore {
		t.Errorf("before the first request: %d ffmpeg processes, thumbnail made %v; want none", procsBefore, thumbBefore)
	}
	distinct := map[string]bool{}
	for _, r := range reqs {
		t.Logf("request at %v: %d, ETag %s, answered in %v", r.at.Round(time.Millisecond), r.status, r.etag, r.took.Round(time.Millisecond))
		if r.status != 200 || r.etag == "" {
			t.Errorf("request at %v: status %d, ETag %q", r.at.Round(time.Millisecond), r.status, r.etag)
		}
		distinct[r.etag] = true
	}
	// Asked at 0.5, 2, 3.5, 5, 6.5 s with a 2 s interval: decodes at 0.5 s,
	// then at 3.5 (stale) and at 6.5 s (stale again).
	if len(distinct) < 2 || len(distinct) > 3 {
		t.Errorf("%d distinct thumbnails over %d requests, want 2 or 3: %v", len(distinct), len(reqs), reqs)
	}
	if got := metricValue(m, "onair_moderation_frames_decoded_total"); got != strconv.Itoa(len(distinct)) {
		t.Errorf("%s frames decoded, want %d", got, len(distinct))
	}
	if got := metricValue(m, "onair_moderation_decoder_starts_total"); got != "1" {
		t.Errorf("%s decoder processes started, want 1 (kept by the pool)", got)
	}
	m.Close()
	if pids := ffmpegChildren(t); len(pids) != 0 {
		t.Errorf("ffmpeg processes left after Close: %v", pids)
	}
}

func TestThumbnailHandler(t *testing.T) {
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=3", ingest.CodecH264, 30, 30)
	h := newHub()
	opts := DefaultOptions()
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	srv := thumbServer(t, m)
	url := srv.URL + "/api/v1/channels/thumb/thumbnail.jpg"
	var checked bool
	play(t, m, h, c, "thumb", 0, func(el time.Duration) {
		if checked || el < time.Second {
			return
		}
		checked = true
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" ||
			resp.Header.Get("Cache-Control") != "public, max-age=5" || resp.Header.Get("ETag") == "" ||
			resp.Header.Get("Last-Modified") == "" || len(body) < 100 || body[0] != 0xff || body[1] != 0xd8 {
			t.Errorf("thumbnail: %s %v (%d bytes)", resp.Status, resp.Header, len(body))
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified {
			t.Errorf("conditional GET: %s, want 304", resp2.Status)
		}
	})
	if !checked {
		t.Fatal("thumbnail never checked")
	}
	for _, ch := range []string{"thumb", "nobody"} { // ended, never existed
		resp, err := http.Get(srv.URL + "/api/v1/channels/" + ch + "/thumbnail.jpg")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %s %q, want 404 no-store", ch, resp.Status, resp.Header.Get("Cache-Control"))
		}
	}
}
