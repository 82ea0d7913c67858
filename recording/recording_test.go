package recording

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

func newRecorder(t *testing.T, opts Options) *Recorder {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Record == nil {
		opts.Record = func(string) bool { return true }
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

var started = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// feed sends segs segments of parts parts of 250 ms each (part bytes are their
// segment and part numbers, to check what lands where).
func feed(w *Writer, firstSeg, segs, parts int, discAt int) {
	for s := firstSeg; s < firstSeg+segs; s++ {
		for p := 0; p < parts; p++ {
			data := bytes.Repeat([]byte{byte(s), byte(p)}, 100)
			w.Part(data, 250*time.Millisecond, p == 0, p == parts-1, s == discAt, started.Add(time.Duration(s)*time.Second))
		}
	}
}

func waitDone(t *testing.T, w *Writer) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("recording not finished 5 s after its end")
	}
}

func TestRecordBroadcast(t *testing.T) {
	r := newRecorder(t, Options{Thumbnail: func(_ context.Context, channel string) ([]byte, bool) { return []byte("jpeg of " + channel), true }})
	b := &ingest.Broadcast{ID: "0123456789abcdef", Channel: "main", Started: started}
	w := r.Start(b, []byte("init"))
	if w == nil {
		t.Fatal("not recording")
	}
	feed(w, 0, 3, 4, -1)
	waitFor(t, func() bool { m, _ := r.Get("main", w.meta.ID); return m.Segments == 3 })

	// While live: an EVENT playlist listing the complete segments; served briefly cacheable.
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	body, hdr := get(t, srv.URL+"/vod/main/"+w.meta.ID+"/index.m3u8", 200)
	if !strings.Contains(body, "#EXT-X-PLAYLIST-TYPE:EVENT") || strings.Contains(body, "ENDLIST") || strings.Count(body, "#EXTINF:1.00000,") != 3 {
		t.Fatalf("live playlist:\n%s", body)
	}
	if hdr.Get("Cache-Control") != "public, max-age=1" {
		t.Fatalf("live playlist Cache-Control %q", hdr.Get("Cache-Control"))
	}
	waitFor(t, func() bool { m, _ := r.Get("main", w.meta.ID); return m.Thumbnail })
	if body, hdr := get(t, srv.URL+"/vod/main/"+w.meta.ID+"/thumbnail.jpg", 200); body != "jpeg of main" || hdr.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail %q, %v", body, hdr)
	}
	feed(w, 3, 1, 2, 3) // a discontinuity (a reconnect), then a segment cut short by the end
	w.Part([]byte("tail"), 100*time.Millisecond, true, false, false, started.Add(5*time.Second))
	w.End(ingest.EndStopped)
	waitDone(t, w)

	body, hdr = get(t, srv.URL+"/vod/main/"+w.meta.ID+"/index.m3u8", 200)
	want := "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n" +
		"#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:00.000Z\n#EXTINF:1.00000,\n000000.m4s\n" +
		"#EXTINF:1.00000,\n000001.m4s\n#EXTINF:1.00000,\n000002.m4s\n" +
		"#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:03.000Z\n#EXTINF:0.50000,\n000003.m4s\n" +
		"#EXTINF:0.10000,\n000004.m4s\n#EXT-X-ENDLIST\n"
	if body != want {
		t.Fatalf("final playlist:\n%s\nwant:\n%s", body, want)
	}
	if hdr.Get("Cache-Control") != "public, max-age=86400" {
		t.Fatalf("final playlist Cache-Control %q", hdr.Get("Cache-Control"))
	}
	seg, hdr := get(t, srv.URL+"/vod/main/"+w.meta.ID+"/000001.m4s", 200)
	if len(seg) != 800 || seg[0] != 1 || seg[201] != 1 || !strings.Contains(hdr.Get("Cache-Control"), "immutable") {
		t.Fatalf("segment 1: %d bytes, starts %v, Cache-Control %q", len(seg), []byte(seg[:4]), hdr.Get("Cache-Control"))
	}
	m, _ := r.Get("main", w.meta.ID)
	if m.State != StateComplete || m.Duration != 3600*time.Millisecond || m.Size != 14*200+4 || m.Segments != 5 {
		t.Fatalf("meta: %+v", m)
	}
	for _, bad := range []string{"/vod/main/" + w.meta.ID + "/meta.json", "/vod/main/" + w.meta.ID + "/parts.log", "/vod/main/../main/" + w.meta.ID + "/index.m3u8",
		"/vod/main/" + w.meta.ID + "/000009.m4s", "/vod/main/nope/index.m3u8", "/vod/other/" + w.meta.ID + "/index.m3u8"} {
		if _, hdr := get(t, srv.URL+bad, 404); hdr.Get("Cache-Control") != "public, max-age=1" {
			t.Errorf("%s: 404 with Cache-Control %q", bad, hdr.Get("Cache-Control"))
		}
	}
}

// A taken-down broadcast's recording is hidden at once (kept), or deleted.
func TestTakedownHidesOrDeletes(t *testing.T) {
	for _, policy := range []string{TakedownHide, TakedownDelete} {
		t.Run(policy, func(t *testing.T) {
			var purged []string
			r := newRecorder(t, Options{Takedown: policy, OnHide: func(_ string, p []string) { purged = p }})
			w := r.Start(&ingest.Broadcast{ID: "feedfeedfeedfeed", Channel: "bad", Started: started}, []byte("init"))
			feed(w, 0, 2, 4, -1)
			w.End(ingest.EndTakenDown)
			srv := httptest.NewServer(r.Handler())
			defer srv.Close()
			get(t, srv.URL+"/vod/bad/"+w.meta.ID+"/index.m3u8", 404)
			waitDone(t, w)
			if len(r.List("bad", false)) != 0 {
				t.Fatal("a hidden recording is listed")
			}
			kept := len(r.List("bad", true)) == 1
			if kept != (policy == TakedownHide) {
				t.Fatalf("policy %s: kept %v", policy, kept)
			}
			if len(purged) < 3 || !strings.HasSuffix(purged[0], "/index.m3u8") {
				t.Fatalf("purged %v", purged)
			}
		})
	}
}

// A crash loses at most the part being written.
func TestRecoverAfterCrash(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t, Options{Dir: dir})
	w := r.Start(&ingest.Broadcast{ID: "abcdefabcdefabcd", Channel: "main", Started: started}, []byte("init"))
	feed(w, 0, 2, 4, -1)
	feed(w, 2, 1, 3, -1) // segment 2 has 3 of its parts when onair "crashes"
	waitFor(t, func() bool { return w.pending.Load() == 0 && len(w.ops) == 0 })
	time.Sleep(50 * time.Millisecond)
	// The crash: a part half written, its log line cut short; nothing ended.
	f, _ := os.OpenFile(filepath.Join(w.dir, segmentFile(2)), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("half a part"))
	f.Close()
	lf, _ := os.OpenFile(filepath.Join(w.dir, partsLog), os.O_WRONLY|os.O_APPEND, 0)
	lf.Write([]byte("2 11 25"))
	lf.Close()

	r2 := newRecorder(t, Options{Dir: dir})
	m, err := r2.Get("main", w.meta.ID)
	if err != nil || m.State != StateComplete || m.Segments != 3 || m.Duration != 2750*time.Millisecond || m.Stopped == "" {
		t.Fatalf("recovered: %+v, %v", m, err)
	}
	if st, _ := os.Stat(filepath.Join(w.dir, segmentFile(2))); st.Size() != 600 {
		t.Fatalf("segment 2 is %d bytes after recovery, want its 3 parts (600)", st.Size())
	}
	pl, _ := os.ReadFile(filepath.Join(w.dir, playlistFile))
	if !strings.Contains(string(pl), "#EXTINF:0.75000,\n000002.m4s\n#EXT-X-ENDLIST") {
		t.Fatalf("recovered playlist:\n%s", pl)
	}
}

// Retention removes the oldest finished recordings first, never the live one.
func TestRetention(t *testing.T) {
	r := newRecorder(t, Options{MaxBytes: 5000})
	var ids []string
	for i := range 4 {
		b := &ingest.Broadcast{ID: "aaaaaaa" + string(rune('0'+i)) + "00000000", Channel: "main", Started: started.Add(time.Duration(i) * time.Hour)}
		w := r.Start(b, []byte("init"))
		feed(w, 0, 2, 4, -1) // 1600 bytes
		ids = append(ids, w.meta.ID)
		if i < 3 {
			w.End(ingest.EndStopped)
			waitDone(t, w)
		} else {
			defer func() { w.End(ingest.EndStopped); waitDone(t, w) }()
			waitFor(t, func() bool { m, _ := r.Get("main", w.meta.ID); return m.Segments == 2 })
		}
	}
	// Four of 1600 bytes: the oldest goes once the fourth has grown.
	r.enforce("main")
	var left []string
	for _, m := range r.List("main", true) {
		left = append(left, m.ID)
	}
	if strings.Join(left, ",") != strings.Join([]string{ids[3], ids[2], ids[1]}, ",") {
		t.Fatalf("left %v of %v", left, ids)
	}

	// A recording bigger than the limit all alone stays while it is written.
	tiny := newRecorder(t, Options{MaxBytes: 1})
	w := tiny.Start(&ingest.Broadcast{ID: "cccccccccccccccc", Channel: "main", Started: started}, []byte("init"))
	feed(w, 0, 2, 4, -1)
	waitFor(t, func() bool { m, _ := tiny.Get("main", w.meta.ID); return m.Segments == 2 })
	tiny.enforce("main")
	if left := tiny.List("main", true); len(left) != 1 {
		t.Fatalf("with a 1-byte limit, left %v; want the live one kept", left)
	}
	w.End(ingest.EndStopped)
	waitDone(t, w)
	tiny.enforce("main")
	if left := tiny.List("main", true); len(left) != 0 {
		t.Fatalf("with a 1-byte limit, left %v once it ended", left)
	}
}

// Recordings older than MaxAge go; younger ones stay.
func TestRetentionByAge(t *testing.T) {
	r := newRecorder(t, Options{MaxAge: 24 * time.Hour})
	for _, start := range []time.Time{time.Now().Add(-72 * time.Hour), time.Now().Add(-time.Hour)} {
		w := r.Start(&ingest.Broadcast{ID: "dddddddd" + start.Format("150405") + "00", Channel: "main", Started: start}, []byte("init"))
		feed(w, 0, 1, 4, -1)
		w.End(ingest.EndStopped)
		waitDone(t, w)
	}
	r.enforce("main")
	left := r.List("main", true)
	if len(left) != 1 || time.Since(left[0].Started) > 2*time.Hour {
		t.Fatalf("left %+v; want only the recording of an hour ago", left)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("timed out")
		}
	}
}

func get(t *testing.T, url string, want int) (string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
	return b.String(), resp.Header
}

// BenchmarkRecordPart is the cost of recording one part: a 3 Mbit/s stream's
// 200 ms part (75 KB), five parts to a segment, written to the test's temporary directory.
func BenchmarkRecordPart(b *testing.B) {
	r, err := New(Options{Dir: b.TempDir(), Record: func(string) bool { return true }})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	w := r.Start(&ingest.Broadcast{ID: "bbbbbbbbbbbbbbbb", Channel: "bench", Started: started}, []byte("init"))
	data := bytes.Repeat([]byte{7}, 75000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Part(data, 200*time.Millisecond, i%5 == 0, i%5 == 4, false, started)
		for w.pending.Load() > 4*int64(len(data)) {
			time.Sleep(10 * time.Microsecond) // the disk's pace, not the queue's
		}
	}
	w.End(ingest.EndStopped)
	<-w.done
	if st := w.why.Load(); st != nil {
		b.Fatalf("recording stopped: %s", *st)
	}
}
