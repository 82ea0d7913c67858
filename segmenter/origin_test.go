package segmenter

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/testmedia"
	"github.com/onairhq/onair/segmenter/hlscheck"
)

func newServer(t *testing.T, opts Options) (*Segmenter, *httptest.Server) {
	t.Helper()
	seg, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(seg.Handler())
	t.Cleanup(func() {
		srv.Close()
		seg.Close()
	})
	return seg, srv
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, hdr...)
}

func do(t testing.TB, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// getWhenListed fetches url until it answers 200: Consume registers a
// channel on its own goroutine, so the first requests may find none yet.
func getWhenListed(t testing.TB, url string) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, body := get(t, url)
		if r.StatusCode == http.StatusOK || time.Now().After(deadline) {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publish runs the clip through seg as one broadcast of channel and returns
// a channel closed when Consume has returned.
func publish(t testing.TB, seg *Segmenter, channel string, c *testmedia.Clip, paced bool) <-chan struct{} {
	t.Helper()
	b := &ingest.Broadcast{ID: channel + fmt.Sprint(time.Now().UnixNano()), Channel: channel, Tracks: c.Tracks, Started: time.Now()}
	stop := make(chan struct{})
	feed := c.Feed(paced, stop)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		seg.Consume(ctx, b, feed)
	}()
	t.Cleanup(func() { close(stop); cancel(); <-done })
	// A request right after publish must find the channel (CI once asked first and got 404).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		seg.mu.Lock()
		cs := seg.channels[channel]
		attached := cs != nil && cs.writing != nil
		seg.mu.Unlock()
		select {
		case <-done:
			attached = true // already over
		default:
		}
		if attached {
			break
		}
	}
	return done
}

// uris lists the URIs a playlist names: plain lines and URI attributes, but
// not the preload hint.
func uris(pl []byte) []string {
	var out []string
	for _, l := range strings.Split(string(pl), "\n") {
		switch {
		case l == "", strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT"):
		case !strings.HasPrefix(l, "#"):
			out = append(out, l)
		default:
			if i := strings.Index(l, `URI="`); i >= 0 {
				out = append(out, strings.SplitN(l[i+5:], `"`, 2)[0])
			}
		}
	}
	return out
}

// objectURLs returns one URL per kind from a live playlist.
func objectURLs(t *testing.T, base string) map[kind]string {
	t.Helper()
	_, media := get(t, base+mediaName)
	urls := map[kind]string{kindMultivariant: base + multivariantName, kindMediaPlaylist: base + mediaName}
	for _, u := range uris(media) {
		if n, ok := parseName(u); ok && urls[n.kind] == "" {
			urls[n.kind] = base + u
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
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 6, Video: true, Audio: true})
	seg, srv := newServer(t, Options{EndedLinger: time.Second})
	done := publish(t, seg, "ch", clip, true)
	base := srv.URL + "/hls/ch/"
	if r, b := get(t, base+multivariantName); r.StatusCode != 200 || !bytes.Contains(b, []byte(`CODECS="avc1.`)) || !bytes.Contains(b, []byte("RESOLUTION=320x240")) {
		t.Fatalf("multivariant: %d\n%s", r.StatusCode, b)
	}
	time.Sleep(2500 * time.Millisecond) // two complete segments
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
			if k == kindMediaPlaylist && cc != "public, max-age=1" || !k.isPlaylist() && cc != fmt.Sprintf("public, max-age=%d, immutable", seg.cfg.mediaAge) {
				t.Errorf("Cache-Control %q", cc)
			}
			if sk := h.Get("Surrogate-Key"); !k.isPlaylist() && !regexp.MustCompile(`^onair-ch onair-ch-[a-z0-9]{8}$`).MatchString(sk) {
				t.Errorf("Surrogate-Key %q, want the channel's and the broadcast's tags", sk)
			}
			if h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Age") {
				t.Errorf("CORS headers %v", h)
			}
			etag := h.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || h.Get("Last-Modified") == "" {
				t.Errorf("ETag %q Last-Modified %q", etag, h.Get("Last-Modified"))
			}
			if r, b := get(t, u, "If-None-Match", etag); r.StatusCode != 304 || len(b) != 0 {
				if !(k == kindMediaPlaylist && r.StatusCode == 200) { // a live playlist may have moved on
					t.Errorf("If-None-Match: status %d, %d bytes", r.StatusCode, len(b))
				}
			}
			if k.isPlaylist() {
				if h.Get("Vary") != "Accept-Encoding" {
					t.Errorf("Vary %q", h.Get("Vary"))
				}
				if bytes.Contains(body, []byte("?")) {
					t.Errorf("playlist URIs carry a query:\n%s", body)
				}
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
				if r, _ := get(t, u, "Range", "bytes=0-9"); r.StatusCode != 200 {
					t.Errorf("Range on a playlist: %d, want the whole playlist", r.StatusCode)
				}
				return
			}
			if zr, _ := get(t, u, "Accept-Encoding", "gzip"); zr.Header.Get("Content-Encoding") != "" || zr.Header.Get("Vary") != "" {
				t.Errorf("media compressed or varied: %v", zr.Header)
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
			mid := len(body) / 2
			r, b = get(t, u, "Range", fmt.Sprintf("bytes=%d-", mid))
			if r.StatusCode != 206 || !bytes.Equal(b, body[mid:]) {
				t.Errorf("open range across parts: status %d, %d bytes", r.StatusCode, len(b))
			}
			// Several ranges would come back as multipart, bigger than the object.
			r, b = get(t, u, "Range", "bytes=0-0,2-2,4-4,6-6,8-8,10-10")
			if r.StatusCode != 200 || !bytes.Equal(b, body) {
				t.Errorf("multi-range: status %d, %d bytes for a %d-byte object", r.StatusCode, len(b), len(body))
			}
		})
	}

	t.Run("segment is its parts", func(t *testing.T) {
		_, media := get(t, urls[kindMediaPlaylist])
		pl, err := hlscheck.Parse(media)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range pl.Segments {
			if len(s.Parts) == 0 {
				continue
			}
			var cat []byte
			for _, p := range s.Parts {
				_, b := get(t, base+p.URI)
				cat = append(cat, b...)
			}
			if _, b := get(t, base+s.URI); !bytes.Equal(b, cat) {
				t.Errorf("segment %s (%d bytes) differs from its parts (%d bytes)", s.URI, len(b), len(cat))
			}
		}
	})

	t.Run("blocking", func(t *testing.T) {
		_, b := get(t, urls[kindMediaPlaylist])
		p, err := hlscheck.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		next := p.MediaSequence + uint64(len(p.Segments))
		r, body := get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", urls[kindMediaPlaylist], next, len(p.Parts)+1))
		if r.StatusCode != 200 || r.Header.Get("Cache-Control") != fmt.Sprintf("public, max-age=%d", 6*p.TargetDuration) {
			t.Fatalf("blocking answer: %d %q", r.StatusCode, r.Header.Get("Cache-Control"))
		}
		q, _ := hlscheck.Parse(body)
		if got := q.MediaSequence + uint64(len(q.Segments)); got < next || got == next && len(q.Parts) < len(p.Parts)+2 {
			t.Errorf("blocking answer ends at %d with %d parts, asked for %d part %d", got, len(q.Parts), next, len(p.Parts)+1)
		}
		_, b = get(t, urls[kindMediaPlaylist])
		p, _ = hlscheck.Parse(b)
		lastComplete := p.MediaSequence + uint64(len(p.Segments)) - 1
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], lastComplete+3)); r.StatusCode != 400 {
			t.Errorf("MSN three past the last complete segment: status %d, want 400", r.StatusCode)
		}
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", urls[kindMediaPlaylist], next, seg.cfg.maxParts)); r.StatusCode != 400 {
			t.Errorf("part index no segment reaches: status %d, want 400", r.StatusCode)
		}
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], p.MediaSequence)); r.StatusCode != 200 {
			t.Errorf("old MSN: status %d, want 200 at once", r.StatusCode)
		}
		// The preload hint is answered when the part is done.
		if p.HintURI != "" {
			start := time.Now()
			r, b := get(t, base+p.HintURI)
			if r.StatusCode != 200 || len(b) == 0 {
				t.Errorf("hinted part: %d after %v", r.StatusCode, time.Since(start))
			}
		}
	})

	t.Run("refused before any work", func(t *testing.T) {
		for _, q := range []string{"?foo=1", "?_HLS_part=1", "?_HLS_msn=x", "?_HLS_msn=1&_HLS_msn=2", "?_HLS_skip=NO",
			"?_HLS_msn=-1", "?_HLS_msn=%2B1", "?a;b"} {
			if r, _ := get(t, urls[kindMediaPlaylist]+q); r.StatusCode != 400 || r.Header.Get("Cache-Control") != noStore {
				t.Errorf("playlist%s: %d %q, want 400", q, r.StatusCode, r.Header.Get("Cache-Control"))
			}
		}
		for _, k := range []kind{kindMultivariant, kindInit, kindSegment, kindPart} {
			if r, _ := get(t, urls[k]+"?v=1"); r.StatusCode != 400 {
				t.Errorf("%v with a query: %d, want 400", k, r.StatusCode)
			}
		}
		escaped := strings.Replace(urls[kindSegment], "/hls/ch/", "/hls/ch%2f", 1)
		if r, _ := get(t, escaped); r.StatusCode != 400 {
			t.Errorf("escaped slash: %d, want 400", r.StatusCode)
		}
		if r, _ := get(t, strings.Replace(urls[kindSegment], ".m4s", "%2em4s", 1)); r.StatusCode != 400 {
			t.Errorf("escaped dot: %d, want 400", r.StatusCode)
		}
	})

	t.Run("delta update", func(t *testing.T) {
		// The window (7 s) barely exceeds CAN-SKIP-UNTIL (6 s): an update may
		// skip at most a segment, and must pass the checker.
		var c hlscheck.Checker
		_, full := get(t, urls[kindMediaPlaylist])
		if err := c.Check(full); err != nil {
			t.Fatal(err)
		}
		_, delta := get(t, urls[kindMediaPlaylist]+"?_HLS_skip=YES")
		if err := c.Check(delta); err != nil {
			t.Fatalf("%v\n%s", err, delta)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, p := range []string{"/hls/nope/index.m3u8", "/hls/ch/nope.m3u8", "/hls/ch/abcdefgh_999999.m4s",
			"/hls/ch/../ch/index.m3u8", "/hls/CH/index.m3u8", "/hls/ch/index.m3u8/x",
			"/hls/ch/foo.txt", "/hls/" + strings.Repeat("a", 65) + "/index.m3u8"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.URL.Path, req.URL.RawPath = p, ""
			rec := httptest.NewRecorder()
			seg.Handler().ServeHTTP(rec, req)
			if rec.Code != 404 || rec.Header().Get("Cache-Control") != notFoundTTL || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: status %d, Cache-Control %q", p, rec.Code, rec.Header().Get("Cache-Control"))
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
		p, _ := hlscheck.Parse(b)
		start := time.Now()
		if r, _ := get(t, fmt.Sprintf("%s?_HLS_msn=%d", urls[kindMediaPlaylist], p.MediaSequence+uint64(len(p.Segments))+1)); r.StatusCode != 200 || time.Since(start) > time.Second {
			t.Errorf("blocking after end: %d after %v", r.StatusCode, time.Since(start))
		}
		for _, u := range uris(b) {
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

// TestLivePlaylistRules reloads a live playlist with blocking requests, as an
// LL-HLS player does, and checks every reload (and every delta update).
func TestLivePlaylistRules(t *testing.T) {
	for _, variant := range []string{VariantLowLatency, VariantFMP4, VariantMPEGTS} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			clip := testmedia.Make(t, testmedia.Spec{Seconds: 8, Video: true, Audio: true})
			seg, srv := newServer(t, Options{Variant: variant})
			done := publish(t, seg, "ch", clip, true)
			u := srv.URL + "/hls/ch/" + mediaName
			var full, delta hlscheck.Checker
			next := ""
			for {
				select {
				case <-done:
				default:
				}
				r, b := get(t, u+next)
				if r.StatusCode != 200 {
					t.Fatalf("reload: %d", r.StatusCode)
				}
				if err := full.Check(b); err != nil {
					t.Fatalf("reload %d: %v\n%s", full.Reloads(), err, b)
				}
				p, _ := hlscheck.Parse(b)
				if p.Ended {
					break
				}
				if variant == VariantLowLatency {
					_, d := get(t, u+"?_HLS_skip=YES")
					if err := delta.Check(d); err != nil {
						t.Fatalf("delta %d: %v\n%s", delta.Reloads(), err, d)
					}
					msn := p.MediaSequence + uint64(len(p.Segments))
					next = fmt.Sprintf("?_HLS_msn=%d&_HLS_part=%d", msn, len(p.Parts))
				} else {
					time.Sleep(300 * time.Millisecond)
				}
			}
			t.Logf("%d reloads checked", full.Reloads())
			if full.Reloads() < 10 {
				t.Errorf("only %d reloads", full.Reloads())
			}
		})
	}
}

// TestVariantsDecode: ffprobe reads every frame of every variant back.
func TestVariantsDecode(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 5, Video: true, Audio: true})
	for _, variant := range []string{VariantLowLatency, VariantFMP4, VariantMPEGTS} {
		t.Run(variant, func(t *testing.T) {
			seg, srv := newServer(t, Options{Variant: variant, SegmentCount: 30})
			<-publish(t, seg, "ch", clip, false)
			v, a := probeCount(t, srv.URL+"/hls/ch/index.m3u8")
			if v != clip.VideoFrames {
				t.Errorf("video frames: %d, published %d", v, clip.VideoFrames)
			}
			if a != clip.AudioFrames {
				t.Errorf("audio frames: %d, published %d", a, clip.AudioFrames)
			}
		})
	}
}

func probeCount(t *testing.T, url string) (video, audio int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=codec_type", "-of", "csv=p=0", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		typ, _, _ := strings.Cut(strings.TrimSpace(l), ",") // side data adds fields
		switch typ {
		case "video":
			video++
		case "audio":
			audio++
		}
	}
	return video, audio
}

// TestBroadcastsOnOneChannel: a new broadcast gets a new playlist whose
// numbers continue; a codec change continues the same playlist after a
// discontinuity with a new init segment; a takedown answers 404 at once.
func TestBroadcastsOnOneChannel(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 3, Video: true, Audio: true})
	other := testmedia.Make(t, testmedia.Spec{Seconds: 3, Video: true, Audio: true, Size: "640x360"})
	seg, srv := newServer(t, Options{SegmentCount: 30, EndedLinger: time.Minute})
	u := srv.URL + "/hls/ch/" + mediaName
	var c hlscheck.Checker
	check := func() *hlscheck.Playlist {
		t.Helper()
		_, b := get(t, u)
		if err := c.Check(b); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		p, _ := hlscheck.Parse(b)
		return p
	}

	<-publish(t, seg, "ch", clip, false)
	first := check()
	if !first.Ended {
		t.Fatal("first broadcast's playlist not ended")
	}

	// A codec change: ingest ends the broadcast with EndNewTracks and starts another.
	b2 := &ingest.Broadcast{ID: "b2", Channel: "ch", Tracks: clip.Tracks}
	f2 := ingest.NewFeed(len(clip.Units)+1, clip.Tracks)
	for _, au := range clip.Units {
		f2.Push(au)
	}
	f2.End(ingest.EndNewTracks, "resolution changed")
	seg.Consume(context.Background(), b2, f2)
	b3 := &ingest.Broadcast{ID: "b3", Channel: "ch", Tracks: other.Tracks}
	f3 := ingest.NewFeed(len(other.Units)+1, other.Tracks)
	for _, au := range other.Units {
		f3.Push(au)
	}
	f3.End(ingest.EndStopped, "")
	seg.Consume(context.Background(), b3, f3)

	_, body := get(t, u)
	c = hlscheck.Checker{} // a new playlist: the first one had ended
	p := check()
	if p.MediaSequence <= first.MediaSequence+uint64(len(first.Segments))-1 {
		t.Errorf("new playlist starts at MSN %d, the last one ended at %d", p.MediaSequence, first.MediaSequence+uint64(len(first.Segments))-1)
	}
	if p.DiscSequence <= first.DiscSequence {
		t.Errorf("discontinuity sequence %d after %d", p.DiscSequence, first.DiscSequence)
	}
	discs := 0
	for _, s := range p.Segments {
		if s.Discontinuity {
			discs++
		}
	}
	if discs != 1 || p.Maps != 2 || !p.Ended {
		t.Errorf("after a codec change: %d discontinuities, %d maps, ended %v; want 1, 2, true\n%s", discs, p.Maps, p.Ended, body)
	}
	if v, _ := probeCount(t, srv.URL+"/hls/ch/index.m3u8"); v != clip.VideoFrames+other.VideoFrames {
		t.Errorf("ffprobe read %d video frames across the change, want %d", v, clip.VideoFrames+other.VideoFrames)
	}

	seg.Remove("ch")
	for _, x := range append(uris(body), mediaName, multivariantName) {
		if r, _ := get(t, srv.URL+"/hls/ch/"+x); r.StatusCode != 404 {
			t.Errorf("%s after takedown: %d", x, r.StatusCode)
		}
	}
}

// TestHoldTimeout: blocking requests during a stalled publisher give up with
// 503 after the hold limit, and nothing of theirs is left behind.
func TestHoldTimeout(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 2, Video: true})
	seg, srv := newServer(t, Options{})
	b := &ingest.Broadcast{ID: "stalled", Channel: "ch", Tracks: clip.Tracks}
	feed := ingest.NewFeed(len(clip.Units)+1, clip.Tracks)
	for _, au := range clip.Units {
		feed.Push(au) // and never end: a publisher that went quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() { defer close(consumed); seg.Consume(ctx, b, feed) }()
	t.Cleanup(func() { cancel(); <-consumed })

	u := srv.URL + "/hls/ch/" + mediaName
	// Listed, and then stalled: the consumer packages the queued clip on its
	// own goroutine, so wait until the playlist stops changing.
	body := getWhenListed(t, u)
	for deadline := time.Now().Add(5 * time.Second); ; {
		time.Sleep(200 * time.Millisecond)
		_, again := get(t, u)
		if bytes.Equal(again, body) || time.Now().After(deadline) {
			break
		}
		body = again
	}
	p, err := hlscheck.Parse(body)
	if err != nil || p.HintURI == "" {
		t.Fatalf("playlist: %v\n%s", err, body)
	}
	next := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", u, p.MediaSequence+uint64(len(p.Segments)), len(p.Parts))
	start := time.Now()
	r, _ := get(t, next)
	if r.StatusCode != 503 || time.Since(start) < seg.cfg.hold-100*time.Millisecond {
		t.Errorf("blocking request on a stalled stream: %d after %v, want 503 after %v", r.StatusCode, time.Since(start), seg.cfg.hold)
	}
	if r, _ := get(t, srv.URL+"/hls/ch/"+p.HintURI); r.StatusCode != 503 {
		t.Errorf("hinted part on a stalled stream: %d, want 503", r.StatusCode)
	}

	// Many abandoned requests: each one's goroutine is the server's own and
	// ends with it; the segmenter starts none.
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i := range 2000 {
		wg.Go(func() {
			rctx, rcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer rcancel()
			req, _ := http.NewRequestWithContext(rctx, http.MethodGet, fmt.Sprintf("%s&x=%d", next, i)[:len(next)], nil)
			rec := httptest.NewRecorder()
			seg.Handler().ServeHTTP(rec, req)
		})
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("%d goroutines after 2000 abandoned blocking requests, %d before", after, before)
	}
}
