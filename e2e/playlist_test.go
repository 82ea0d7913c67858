package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onairhq/onair/segmenter/hlscheck"
)

// playlistWatcher reloads one media playlist the way a player does and checks
// every reload with hlscheck.
type playlistWatcher struct {
	url     string
	block   bool // use LL-HLS blocking reloads (_HLS_msn/_HLS_part)
	checker hlscheck.Checker

	mu     sync.Mutex
	errs   []error
	last   *hlscheck.Playlist
	uris   map[string]bool
	ended  bool
	failed int // requests answered other than 200
}

// mediaPlaylistURL reads the multivariant playlist and returns its first media playlist.
func mediaPlaylistURL(t testing.TB, base, channel string) string {
	t.Helper()
	_, mv := Get(t, base+"/hls/"+channel+"/index.m3u8")
	for _, l := range strings.Split(string(mv), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return base + "/hls/" + channel + "/" + l
		}
	}
	t.Fatalf("no media playlist in:\n%s", mv)
	return ""
}

// run reloads until ctx is done or the playlist ends.
func (w *playlistWatcher) run(ctx context.Context) {
	w.uris = map[string]bool{}
	for ctx.Err() == nil {
		url := w.url
		if w.block && w.last != nil && !w.last.Ended {
			msn, part := nextPart(w.last)
			url = fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", w.url, msn, part)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // ctx done, or the server is going away
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			w.mu.Lock()
			w.failed++
			w.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		pl, err := hlscheck.Parse(body)
		w.mu.Lock()
		if err == nil {
			err = w.checker.CheckPlaylist(pl)
			w.last = pl
			for _, s := range pl.Segments {
				w.uris[s.URI] = true
			}
			w.ended = pl.Ended
		}
		if err != nil {
			w.errs = append(w.errs, fmt.Errorf("reload %d: %w", w.checker.Reloads(), err))
		}
		w.mu.Unlock()
		if w.ended {
			return
		}
		if !w.block {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// nextPart is the part after the newest one a playlist lists.
func nextPart(pl *hlscheck.Playlist) (msn uint64, part int) {
	msn = pl.MediaSequence + uint64(pl.Skipped+len(pl.Segments))
	return msn, len(pl.Parts)
}

func (w *playlistWatcher) report(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, err := range w.errs {
		if i == 10 {
			t.Errorf("… and %d more", len(w.errs)-10)
			break
		}
		t.Error(err)
	}
}

// TestPlaylistRulesOverLiveReloads runs the playlist checker over many reloads
// of live output, in every variant, and in LL-HLS at 24 fps, where parts of
// whole frames need a PART-TARGET of their own.
func TestPlaylistRulesOverLiveReloads(t *testing.T) {
	needTools(t, "ffmpeg")
	for _, tc := range []struct {
		name, variant string
		fps           int // 0: the default 30
	}{
		{"lowlatency", "lowlatency", 0},
		{"fmp4", "fmp4", 0},
		{"mpegts", "mpegts", 0},
		{"lowlatency 24 fps", "lowlatency", 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := sharedSource(t, Source{Seconds: 20, FPS: tc.fps})
			srv := StartServer(t, "--hls-variant", tc.variant)
			pub := Publish(t, file, srv.RTMP+"/"+srv.Key, false)
			WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 10*time.Second)
			w := &playlistWatcher{url: mediaPlaylistURL(t, srv.HTTP, "main"), block: tc.variant == "lowlatency"}
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			w.run(ctx)
			w.report(t)
			if !w.ended {
				t.Errorf("the playlist never ended after the publisher stopped")
			}
			if n := w.checker.Reloads(); n < 40 {
				t.Errorf("only %d reloads checked", n)
			} else {
				t.Logf("%d reloads checked, %d segments seen", n, len(w.uris))
			}
			if w.last != nil && w.last.PartTarget > 0 {
				t.Logf("PART-TARGET %v", w.last.PartTarget)
			}
			pub.Wait(10 * time.Second)
		})
	}
}

// TestReconnectWithinGrace drops the publisher's connection without unpublishing
// and reconnects: players keep one playlist whose sequence numbers only grow,
// with no discontinuity (the timeline continues), and the web players
// (newest releases) play on across it.
func TestReconnectWithinGrace(t *testing.T) {
	needTools(t, "ffmpeg")
	file := sharedSource(t, Source{Seconds: 8})
	srv := StartServer(t, "--reconnect-grace", "10s")
	first := Publish(t, file, srv.RTMP+"/"+srv.Key, true)
	WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 10*time.Second)
	media := mediaPlaylistURL(t, srv.HTTP, "main")

	w := &playlistWatcher{url: media, block: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()

	site := servePlayerSite(t, playersDir(t))
	type player struct {
		c    playerCase
		ctx  context.Context
		read func() playState
		// At the drop: media played so far, and buffered ahead of the playhead.
		played, ahead float64
	}
	var players []*player
	for _, c := range playerMatrix {
		if c.name != "hlsjs-latest-lowlatency" && c.name != "shaka-lowlatency" && c.name != "videojs-vhs" {
			continue
		}
		pctx, read := openPlayer(t, site, srv.HTTP+"/hls/main/index.m3u8", c)
		players = append(players, &player{c: c, ctx: pctx, read: read})
	}

	time.Sleep(6 * time.Second)
	w.mu.Lock()
	before := w.last
	w.mu.Unlock()
	if before == nil || len(before.Segments) == 0 {
		t.Fatal("no segments before the drop")
	}
	first.Kill() // a network failure: no unpublish
	for _, p := range players {
		st := p.read()
		if st.StartMs == nil {
			t.Fatalf("%s did not start before the drop: %s", p.c.label, describePlay(st))
		}
		p.played = st.Played
		// The <video> element itself: video.js gives its id to its own wrapper.
		ahead, err := chromedp.Run(p.ctx, chromedp.Evaluate[float64](
			`(v => v.buffered.length ? v.buffered.end(v.buffered.length-1) - v.currentTime : 0)(document.querySelector("video"))`))
		if err != nil {
			t.Fatalf("%s: read the buffer: %v", p.c.label, err)
		}
		p.ahead = ahead
	}
	time.Sleep(3 * time.Second)
	second := Publish(t, file, srv.RTMP+"/"+srv.Key, true)
	time.Sleep(10 * time.Second)
	cancel()
	<-done
	for _, p := range players {
		// What was buffered at the drop, and then at least 3 s of the
		// returning publisher's media (10 s of it were sent).
		st := p.read()
		t.Logf("%s: %.2f s buffered at the drop; %s", p.c.label, p.ahead, describePlay(st))
		if after := st.Played - p.played; after < p.ahead+3 || len(st.Fatal) > 0 {
			t.Errorf("%s played %.2f s after the drop (%.2f s of it buffered before), fatal errors: %s", p.c.label, after, p.ahead, joinRaw(st.Fatal))
		}
	}
	second.Stop()

	w.report(t)
	if w.ended {
		t.Fatal("the playlist ended during the reconnect")
	}
	if media != mediaPlaylistURL(t, srv.HTTP, "main") {
		t.Errorf("the media playlist changed across the reconnect")
	}
	w.mu.Lock()
	after := w.last
	w.mu.Unlock()
	if after.MediaSequence+uint64(len(after.Segments)) <= before.MediaSequence+uint64(len(before.Segments))+2 {
		t.Errorf("the playlist did not grow after the reconnect: msn %d (+%d) then %d (+%d)",
			before.MediaSequence, len(before.Segments), after.MediaSequence, len(after.Segments))
	}
	// No discontinuity: the timeline continues, and Shaka skips seconds ahead
	// after one. Those before the window are counted by
	// EXT-X-DISCONTINUITY-SEQUENCE.
	discs := func(pl *hlscheck.Playlist) uint64 {
		n := pl.DiscSequence
		for _, s := range pl.Segments {
			if s.Discontinuity {
				n++
			}
		}
		return n
	}
	if d := discs(after) - discs(before); d != 0 {
		t.Errorf("%d discontinuities across the reconnect, want none", d)
	}
	// The same playlist: segment names keep the broadcast's prefix.
	prefix := func(uri string) string { return uri[:strings.LastIndexByte(uri, '_')+1] }
	if p0, p1 := prefix(before.Segments[len(before.Segments)-1].URI), prefix(after.Segments[len(after.Segments)-1].URI); p0 != p1 {
		t.Errorf("segment names changed from %q to %q: a new playlist, not a continued one", p0, p1)
	}
	if n := strings.Count(srv.Logs(), "broadcast started"); n != 1 {
		t.Errorf("%d broadcasts started, want the one continued", n)
	}
}
