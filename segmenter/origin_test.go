package segmenter

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/segmenter/hlscheck"
)

// objectURLs finds one URL of every object kind in a live LL-HLS stream.
func objectURLs(t *testing.T, base string) map[kind]string {
	t.Helper()
	media := waitFor(t, base+"video1_stream.m3u8")
	urls := map[kind]string{kindMultivariant: base + "index.m3u8", kindMediaPlaylist: base + "video1_stream.m3u8"}
	for _, u := range playlistURIs(media) {
		if k, ok := classify(u); ok && urls[k] == "" {
			urls[k] = base + u
		}
	}
	for _, k := range []kind{kindInit, kindSegment, kindPart} {
		if urls[k] == "" {
			t.Fatalf("no %v in playlist:\n%s", k, media)
		}
	}
	return urls
}

func TestOriginHeaders(t *testing.T) {
	c := makeClip(t, clipAV, 6)
	seg, srv := newServer(t, Options{EndedLinger: time.Second})
	done, _ := publish(t, seg, "ch", c, true)
	base := srv.URL + "/hls/ch/"
	waitFor(t, base+"index.m3u8")
	urls := objectURLs(t, base)

	for k, u := range urls {
		t.Run(k.String(), func(t *testing.T) {
			resp, body := get(t, u)
			h := resp.Header
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			wantType := map[bool]string{true: "application/vnd.apple.mpegurl", false: "video/mp4"}[k.isPlaylist()]
			if got := h.Get("Content-Type"); got != wantType {
				t.Errorf("Content-Type %q, want %q", got, wantType)
			}
			cc := h.Get("Cache-Control")
			if k.isPlaylist() && cc != "public, max-age=1" || !k.isPlaylist() && !strings.Contains(cc, "immutable") {
				t.Errorf("Cache-Control %q", cc)
			}
			if h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Age") {
				t.Errorf("CORS headers %v", h)
			}
			if h.Get("Set-Cookie") != "" {
				t.Error("cookie set")
			}
			etag := h.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || h.Get("Last-Modified") == "" {
				t.Errorf("ETag %q Last-Modified %q", etag, h.Get("Last-Modified"))
			}
			if k.isPlaylist() {
				if h.Get("Vary") != "Accept-Encoding" {
					t.Errorf("Vary %q", h.Get("Vary"))
				}
				if bytes.Contains(body, []byte("?")) {
					t.Errorf("playlist URIs carry a query:\n%s", body)
				}
				// gzip only when asked.
				zr, zb := get(t, u, "Accept-Encoding", "gzip")
				if zr.Header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("no gzip when asked")
				}
				r, err := gzip.NewReader(bytes.NewReader(zb))
				if err != nil {
					t.Fatal(err)
				}
				if plain, _ := io.ReadAll(r); !bytes.HasPrefix(plain, []byte("#EXTM3U")) {
					t.Errorf("gzip body does not inflate to a playlist")
				}
				if zr.Header.Get("ETag") == etag {
					t.Errorf("gzip and identity share ETag %s", etag)
				}
				return
			}
			// Media: never gzip, 304, HEAD, Range.
			if zr, _ := get(t, u, "Accept-Encoding", "gzip"); zr.Header.Get("Content-Encoding") != "" || zr.Header.Get("Vary") != "" {
				t.Errorf("media compressed or varied: %v", zr.Header)
			}
			if r, b := get(t, u, "If-None-Match", etag); r.StatusCode != 304 || len(b) != 0 {
				t.Errorf("If-None-Match: status %d, %d bytes", r.StatusCode, len(b))
			}
			if r, b := do(t, http.MethodHead, u); r.StatusCode != 200 || len(b) != 0 || r.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Errorf("HEAD: status %d, %d bytes, length %q", r.StatusCode, len(b), r.Header.Get("Content-Length"))
			}
			r, b := get(t, u, "Range", "bytes=0-99")
			if r.StatusCode != 206 || !bytes.Equal(b, body[:100]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-99/%d", len(body)) {
				t.Errorf("Range: status %d, %d bytes, %q", r.StatusCode, len(b), r.Header.Get("Content-Range"))
			}
			if r.Header.Get("Accept-Ranges") != "bytes" {
				t.Errorf("Accept-Ranges %q", r.Header.Get("Accept-Ranges"))
			}
		})
	}

	t.Run("blocking", func(t *testing.T) {
		media, _ := get(t, urls[kindMediaPlaylist])
		_ = media
		_, b := get(t, urls[kindMediaPlaylist])
		p, err := hlscheck.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		next := p.MediaSequence + uint64(len(p.Segments))
		start := time.Now()
		r, body := get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=0", urls[kindMediaPlaylist], next))
		if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Cache-Control"), fmt.Sprintf("max-age=%d", 6*p.TargetDuration)) {
			t.Fatalf("blocking answer: %d %q after %v", r.StatusCode, r.Header.Get("Cache-Control"), time.Since(start))
		}
		q, _ := hlscheck.Parse(body)
		if got := q.MediaSequence + uint64(len(q.Segments)); got < next {
			t.Errorf("blocking answer ends at %d, asked for %d part 0", got, next)
		}
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], next+3)); r.StatusCode != 400 {
			t.Errorf("MSN three ahead: status %d, want 400", r.StatusCode)
		}
		if r, _ := get(t, urls[kindMediaPlaylist]+"?_HLS_part=1"); r.StatusCode != 400 {
			t.Errorf("part without MSN: status %d, want 400", r.StatusCode)
		}
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], p.MediaSequence)); r.StatusCode != 200 {
			t.Errorf("old MSN: status %d, want 200 at once", r.StatusCode)
		}
		// Delta update.
		if _, b := get(t, urls[kindMediaPlaylist]+"?_HLS_skip=YES"); !bytes.Contains(b, []byte("#EXT-X-SKIP")) {
			t.Errorf("no delta update:\n%s", b)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, p := range []string{"/hls/nope/index.m3u8", "/hls/ch/nope.m3u8", "/hls/ch/x_seg999999.mp4",
			"/hls/ch/../ch/index.m3u8", "/hls/CH/index.m3u8", "/hls/ch/index.m3u8/x", "/hls/ch/%2e%2e/index.m3u8",
			"/hls/ch/foo.txt", "/hls/" + strings.Repeat("a", 65) + "/index.m3u8"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.URL.Path, req.URL.RawPath = p, ""
			rec := newRecorderT()
			seg.Handler().ServeHTTP(rec, req)
			if rec.status != 404 || rec.header.Get("Cache-Control") != "public, max-age=1" || rec.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: status %d, Cache-Control %q", p, rec.status, rec.header.Get("Cache-Control"))
			}
		}
	})

	t.Run("options", func(t *testing.T) {
		r, _ := do(t, http.MethodOptions, urls[kindSegment], "Origin", "https://example.com", "Access-Control-Request-Method", "GET")
		if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("OPTIONS: %d %v", r.StatusCode, r.Header)
		}
		if r, _ := do(t, http.MethodPost, urls[kindSegment]); r.StatusCode != 405 {
			t.Errorf("POST: %d", r.StatusCode)
		}
	})

	<-done
	t.Run("ended", func(t *testing.T) {
		_, b := get(t, urls[kindMediaPlaylist])
		if !bytes.HasSuffix(b, []byte("#EXT-X-ENDLIST\n")) || bytes.Contains(b, []byte("PRELOAD-HINT")) {
			t.Fatalf("ended playlist:\n%s", b)
		}
		// A blocking request past the end answers at once.
		p, _ := hlscheck.Parse(b)
		start := time.Now()
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], p.MediaSequence+uint64(len(p.Segments))+1)); r.StatusCode != 200 || time.Since(start) > time.Second {
			t.Errorf("blocking after end: %d after %v", r.StatusCode, time.Since(start))
		}
		for _, u := range playlistURIs(b) {
			if r, _ := get(t, base+u); r.StatusCode != 200 {
				t.Errorf("%s after end: %d", u, r.StatusCode)
			}
		}
		time.Sleep(1500 * time.Millisecond) // EndedLinger
		for k, u := range urls {
			if r, _ := get(t, u); r.StatusCode != 404 {
				t.Errorf("%v after linger: %d", k, r.StatusCode)
			}
		}
	})
}

type recorderT struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorderT() *recorderT                   { return &recorderT{header: make(http.Header)} }
func (r *recorderT) Header() http.Header         { return r.header }
func (r *recorderT) WriteHeader(code int)        { r.status = code }
func (r *recorderT) Write(p []byte) (int, error) { return r.body.Write(p) }

func TestRemoveAndNewBroadcast(t *testing.T) {
	c := makeClip(t, clipAV, 4)
	seg, srv := newServer(t, Options{EndedLinger: time.Minute})
	media := srv.URL + "/hls/ch/video1_stream.m3u8"

	// First broadcast ends normally; the second continues its numbers.
	done, _ := publish(t, seg, "ch", c, false)
	<-done
	first, _ := hlscheck.Parse(waitFor(t, media))
	done, _ = publish(t, seg, "ch", c, false)
	<-done
	b := waitFor(t, media)
	second, _ := hlscheck.Parse(b)
	lastFirst := first.Segments[len(first.Segments)-1].MSN
	if second.MediaSequence <= lastFirst {
		t.Errorf("second broadcast starts at MSN %d, first ended at %d", second.MediaSequence, lastFirst)
	}
	if !bytes.Contains(b, []byte("#EXT-X-DISCONTINUITY-SEQUENCE:")) {
		t.Errorf("no discontinuity sequence:\n%s", b)
	}

	// A takedown drops the channel at once, even mid-broadcast.
	done, _ = publish(t, seg, "ch", c, true)
	waitFor(t, media)
	seg.Remove("ch")
	if r, _ := get(t, media); r.StatusCode != 404 {
		t.Errorf("after Remove: %d", r.StatusCode)
	}
	<-done
	if r, _ := get(t, media); r.StatusCode != 404 {
		t.Errorf("after the removed broadcast ended: %d", r.StatusCode)
	}
}

func TestVisible(t *testing.T) {
	c := makeClip(t, clipAV, 4)
	seg, srv := newServer(t, Options{EndedLinger: time.Minute, Visible: func(ch string) bool { return ch != "hidden" }})
	done, _ := publish(t, seg, "hidden", c, false)
	<-done
	if r, _ := get(t, srv.URL+"/hls/hidden/index.m3u8"); r.StatusCode != 404 {
		t.Errorf("hidden channel: %d", r.StatusCode)
	}
}

// TestCheckerLive runs the playlist checker over many reloads of live output,
// blocking reloads for LL-HLS and plain polling for the others.
func TestCheckerLive(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	c := makeClip(t, clipAV, 10)
	for _, variant := range []string{VariantLowLatency, VariantMPEGTS} {
		t.Run(variant, func(t *testing.T) {
			seg, srv := newServer(t, Options{Variant: variant, EndedLinger: time.Minute})
			done, _ := publish(t, seg, "ch", c, true)
			name := "video1_stream.m3u8"
			if variant == VariantMPEGTS {
				name = "main_stream.m3u8"
			}
			u := srv.URL + "/hls/ch/" + name
			b := waitFor(t, u)
			var chk hlscheck.Checker
			ended := false
			for !ended {
				if err := chk.Check(b); err != nil {
					t.Errorf("reload %d: %v\n%s", chk.Reloads(), err, b)
				}
				p, err := hlscheck.Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				ended = p.Ended
				next := u
				if variant == VariantLowLatency {
					msn := p.MediaSequence + uint64(len(p.Segments))
					next = fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", u, msn, len(p.Parts))
				} else {
					time.Sleep(300 * time.Millisecond)
				}
				r, nb := get(t, next)
				if r.StatusCode != 200 {
					t.Fatalf("%s: %d", next, r.StatusCode)
				}
				b = nb
			}
			<-done
			if chk.Reloads() < 10 {
				t.Errorf("only %d reloads", chk.Reloads())
			}
			t.Logf("%d reloads checked", chk.Reloads())
		})
	}
}

func TestBlockingTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	c := makeClip(t, clipAV, 4)
	stalled := *c
	stalled.aus = c.aus[:len(c.aus)/2]
	seg, srv := newServer(t, Options{EndedLinger: time.Minute})
	_, b := publishStalled(t, seg, "ch", &stalled)
	_ = b
	u := srv.URL + "/hls/ch/video1_stream.m3u8"
	p, _ := hlscheck.Parse(waitFor(t, u))
	time.Sleep(500 * time.Millisecond)
	_, pb := get(t, u)
	p, _ = hlscheck.Parse(pb)
	next := p.MediaSequence + uint64(len(p.Segments)) + 1
	start := time.Now()
	r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", u, next))
	if r.StatusCode != 503 || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("stalled blocking request: %d %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	if el := time.Since(start); el < 2*time.Second || el > 10*time.Second {
		t.Errorf("gave up after %v, want about 3 target durations", el)
	}
}
