package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParsePlaylist(t *testing.T) {
	cases := []struct {
		name string
		text string
		want playlist
		err  string
	}{
		{"multivariant", "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/main.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nother.m3u8\n",
			playlist{variant: "v/main.m3u8"}, ""},
		{"mpeg-ts media", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.0,\n41.ts\n#EXTINF:2.0,\n42.ts\n",
			playlist{target: 2 * time.Second, seq: 41, segments: 2}, ""},
		{"LL-HLS with parts of the segment in progress", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n" +
			"#EXT-X-PART:DURATION=0.2,URI=\"p1\"\n#EXTINF:1.0,\ns7\n#EXT-X-PART:DURATION=0.2,URI=\"p2\"\n#EXT-X-PART:DURATION=0.2,URI=\"p3\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4\"\n",
			playlist{target: time.Second, seq: 7, segments: 1, parts: 2}, ""},
		{"delta update", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n#EXTINF:1,\ns15\n",
			playlist{target: time.Second, seq: 10, segments: 6}, ""},
		{"ended", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\ns0\n#EXT-X-ENDLIST\n",
			playlist{target: time.Second, segments: 1, ended: true}, ""},
		{"not a playlist", "<html>", playlist{}, "no #EXTM3U"},
		{"empty", "", playlist{}, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parsePlaylist([]byte(c.text), nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// playlists serves scripted HLS: each channel's media playlist gains a part
// at every request unless the channel is frozen; a missing channel is 404.
type playlists struct {
	mu      sync.Mutex
	entries map[string]int // multivariant requests per channel
	parts   map[string]int
	frozen  map[string]bool
	gone    map[string]bool
}

func (p *playlists) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // hls/{channel}/{file}
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	ch, file := parts[1], parts[2]
	n, ok := p.parts[ch]
	if !ok || p.gone[ch] {
		http.NotFound(w, r)
		return
	}
	if file == "index.m3u8" {
		p.entries[ch]++
		fmt.Fprint(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3000000\nmedia/../video.m3u8\n")
		return
	}
	if !p.frozen[ch] {
		n++
		p.parts[ch] = n
	}
	// Target 0.2 s (not an integer, which the watcher tolerates) keeps the test short.
	fmt.Fprintf(w, "#EXTM3U\n#EXT-X-TARGETDURATION:0.2\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXTINF:0.2,\nseg%d.mp4\n", n/5, n/5)
	for i := range n % 5 {
		fmt.Fprintf(w, "#EXT-X-PART:DURATION=0.04,URI=\"part%d.%d.mp4\"\n", n/5+1, i)
	}
}

func TestWatch(t *testing.T) {
	srv := &playlists{parts: map[string]int{"fresh": 0, "stalls": 0, "fails": 0}, entries: map[string]int{}, frozen: map[string]bool{}, gone: map[string]bool{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var urls []string
	for _, ch := range []string{"fresh", "stalls", "fails", "never"} {
		urls = append(urls, ts.URL+"/hls/"+ch+"/index.m3u8")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := StartWatch(ctx, WatchOptions{URLs: urls, Interval: 50 * time.Millisecond, StallAfter: 3})
	set := func(f func()) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		f()
	}
	time.Sleep(400 * time.Millisecond)
	set(func() { srv.frozen["stalls"], srv.gone["fails"] = true, true })
	time.Sleep(1200 * time.Millisecond) // 0.6 s is the stall limit
	if stalled, failing := w.Stalled(); stalled < 1 || failing < 2 {
		t.Errorf("while frozen: %d stalled, %d failing; want at least 1 and 2", stalled, failing)
	}
	set(func() { srv.frozen["stalls"], srv.gone["fails"] = false, false })
	time.Sleep(400 * time.Millisecond)
	cancel()
	reports := w.Wait()
	byName := map[string]PlaylistReport{}
	for _, r := range reports {
		byName[strings.Split(r.URL, "/")[4]] = r
	}
	if r := byName["fresh"]; !r.Fresh() || r.Advances < 10 || r.Target != 200*time.Millisecond || !strings.HasSuffix(r.Media, "/hls/fresh/video.m3u8") {
		t.Errorf("fresh playlist: %+v", r)
	}
	if r := byName["stalls"]; r.Fresh() || r.Stalls != 1 || r.MaxStill < time.Second || r.Errors != 0 {
		t.Errorf("playlist frozen for 1.2 s: %+v", r)
	}
	if r := byName["fails"]; r.Fresh() || r.Errors < 5 || !r.Appeared {
		t.Errorf("playlist gone for 1.2 s: %+v", r)
	}
	// Like a player: the multivariant playlist once, again only after the
	// media playlist failed.
	if srv.entries["fresh"] != 1 || srv.entries["stalls"] != 1 || srv.entries["fails"] < 2 {
		t.Errorf("multivariant requests %v, want 1 for playlists that never failed", srv.entries)
	}
	if r := byName["never"]; r.Fresh() || r.Appeared || r.StartErrors < 5 || !strings.Contains(r.LastError, "HTTP 404") {
		t.Errorf("playlist that never existed: %+v", r)
	}
}
