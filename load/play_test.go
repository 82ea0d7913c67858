package load

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/testmedia"
	"github.com/onairhq/onair/segmenter"
)

// origin is a real segmenter behind a real HTTP server, fed a real
// encoded clip as one live broadcast of channel "live", with the
// process's goroutines and heap on /metrics as onair shows them.
type origin struct {
	url  string // of the multivariant playlist
	base string // of the server
}

// startOrigin serves the clip, looped at its real pace (paced) or all at
// once, for loops × its length; then the feed stays open without media,
// like a publisher gone within its grace period: the playlist stalls.
func startOrigin(t *testing.T, opts segmenter.Options, clip *testmedia.Clip, clipLen time.Duration, loops int, paced bool) origin {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	seg, err := segmenter.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/hls/", seg.Handler())
	mux.HandleFunc("/metrics", writeRuntimeMetrics)
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	srv := httptest.NewServer(mux)

	feed := ingest.NewFeed(len(clip.Units)*loops+1, clip.Tracks)
	b := &ingest.Broadcast{ID: fmt.Sprint("b", time.Now().UnixNano()), Channel: "live", Tracks: clip.Tracks, Started: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	consumed, fed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(consumed)
		seg.Consume(ctx, b, feed)
	}()
	go func() {
		defer close(fed)
		start := time.Now()
		for i := range loops {
			for _, au := range clip.Shifted(time.Duration(i) * clipLen) {
				if paced && !sleepCtx(ctx, time.Until(start.Add(au.DTS))) {
					return
				}
				au.Received = time.Now()
				feed.Push(au)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-fed
		seg.Close() // ends every wait at once
		<-consumed
		srv.Close()
	})
	o := origin{url: srv.URL + "/hls/live/index.m3u8", base: srv.URL}
	// Wait until a player can start: a complete segment is listed.
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(srv.URL + "/hls/live/stream.m3u8")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Contains(string(b), "#EXTINF") {
				return o
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no playlist after 15 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeRuntimeMetrics writes the two figures the abandon mode reads, from
// the same sources as onair's /metrics.
func writeRuntimeMetrics(w http.ResponseWriter, _ *http.Request) {
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heap)
	fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(w, "# TYPE go_memstats_heap_alloc_bytes gauge\ngo_memstats_heap_alloc_bytes %d\n", heap[0].Value.Uint64())
}

// Players of each variant see every part (LL-HLS) or segment, with no
// stall, gap or error, against onair's own packager.
func TestPlay(t *testing.T) {
	if testing.Short() {
		t.Skip("plays live streams for several seconds")
	}
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 4, Video: true, Audio: true})
	const players, window = 12, 4 * time.Second
	cases := []struct {
		variant    string
		lowLatency bool
	}{
		{segmenter.VariantLowLatency, true},
		{segmenter.VariantFMP4, false},
		{segmenter.VariantMPEGTS, false},
	}
	for _, c := range cases {
		t.Run(c.variant, func(t *testing.T) {
			o := startOrigin(t, segmenter.Options{Variant: c.variant}, clip, 4*time.Second, 10, true)
			ramp, settle := time.Second, time.Second
			ctx, cancel := context.WithTimeout(context.Background(), ramp+settle+window)
			defer cancel()
			play, err := StartPlay(ctx, PlayOptions{URL: o.url, Players: players, Ramp: ramp, Settle: settle})
			if err != nil {
				t.Fatal(err)
			}
			res := play.Wait()
			var text strings.Builder
			res.WriteText(&text)
			t.Log("\n" + text.String())
			if res.Started != players || res.Appeared != players || res.Held != players ||
				res.Stalls != 0 || res.Gaps != 0 || res.ErrorCount() != 0 || res.Ended != 0 {
				t.Errorf("want every player held, none stalled, no gap, no error")
			}
			if res.LowLatency != c.lowLatency {
				t.Errorf("low latency %v, want %v", res.LowLatency, c.lowLatency)
			}
			// Parts of 250 ms (at 1 s keyframes: 4 a segment) and 1 s
			// segments: each player fetched what the window held.
			for _, p := range res.PerPlayer {
				got, want := p.Segments, int64(window/time.Second)-1
				if c.lowLatency {
					got, want = p.Parts, int64(window/segmenter.DefaultPartDuration)-3
				}
				if got < want {
					t.Errorf("player %d fetched %d parts and %d segments in %v, want at least %d", p.Index, p.Parts, p.Segments, window, want)
				}
			}
			if c.lowLatency {
				if res.Blocking.N < players*int(window/segmenter.DefaultPartDuration)/2 || res.WakeSpread.N == 0 {
					t.Errorf("blocking reloads %v, wake spread %v: want one reload per part per player", res.Blocking, res.WakeSpread)
				}
				if res.Blocking.P50 > segmenter.DefaultPartDuration*2 {
					t.Errorf("blocking reloads wait %v at the median, want about a part's duration", res.Blocking.P50)
				}
			} else if res.Plain.N == 0 || res.Blocking.N != 0 {
				t.Errorf("plain reloads %v, blocking %v: want plain ones only", res.Plain, res.Blocking)
			}
			if res.Media.N == 0 || res.MediaBytes == 0 || res.PlaylistBytes == 0 {
				t.Errorf("media %v, %d media bytes, %d playlist bytes", res.Media, res.MediaBytes, res.PlaylistBytes)
			}
		})
	}
}

// A playlist that ends stops the players, as ended.
func TestPlayEnded(t *testing.T) {
	if testing.Short() {
		t.Skip("plays a live stream")
	}
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 4, Video: true, Audio: true})
	seg, err := segmenter.New(segmenter.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(seg.Handler())
	defer srv.Close()
	defer seg.Close()
	stop := make(chan struct{})
	defer close(stop)
	b := &ingest.Broadcast{ID: "ended", Channel: "live", Tracks: clip.Tracks, Started: time.Now()}
	go seg.Consume(context.Background(), b, clip.Feed(true, stop)) // 4 s, then the feed ends
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	play, err := StartPlay(ctx, PlayOptions{URL: srv.URL + "/hls/live/index.m3u8", Players: 3})
	if err != nil {
		t.Fatal(err)
	}
	for play.Progress().Ended < 3 {
		if ctx.Err() != nil {
			t.Fatalf("players still playing after the playlist ended: %+v", play.Progress())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if res := play.Wait(); res.Ended != 3 || res.Parts == 0 {
		t.Errorf("%+v: want 3 players ended after fetching parts", res)
	}
}

// Abandoned blocking reloads of a stalled stream leave nothing behind on
// onair's packager: the goroutines (the test's client's included, as both
// run in this process) and the live heap come back, long before the
// origin's hold limit would have released a request parked until then.
func TestAbandon(t *testing.T) {
	if testing.Short() {
		t.Skip("sends thousands of requests")
	}
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 4, Video: true, Audio: true})
	// 4 s segments: the hold limit is 12 s. Three loops of the clip, all at
	// once, make two complete segments; then nothing more comes.
	o := startOrigin(t, segmenter.Options{SegmentDuration: 4 * time.Second}, clip, 4*time.Second, 3, false)
	const n = 3000
	res, err := Abandon(context.Background(), AbandonOptions{
		URL: o.url, MetricsURL: o.base + "/metrics", GCURL: o.base + "/debug/pprof/heap?gc=1",
		Requests: n, Concurrency: 300, CancelMin: 5 * time.Millisecond, CancelMax: 50 * time.Millisecond,
		SettleLimit: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	res.WriteText(&text)
	t.Log("\n" + text.String())
	if res.Hold != 12*time.Second || !strings.Contains(res.Asked, "_HLS_part=0") {
		t.Errorf("asked %s with hold %v", res.Asked, res.Hold)
	}
	if len(res.Answered) != 0 || res.Failed != 0 || res.Abandoned != n || res.Written < n*9/10 {
		t.Errorf("want every request written and cancelled unanswered")
	}
	if res.Peak.Goroutines < res.Before.Goroutines+50 {
		t.Errorf("peak goroutines %d against %d before: the burst did not reach the server", res.Peak.Goroutines, res.Before.Goroutines)
	}
	if !res.Back || res.BackAfter >= res.Hold {
		t.Errorf("back %v after %v: want back before the hold limit (%v)", res.Back, res.BackAfter, res.Hold)
	}
}

// A server whose handlers outlive their requests is caught: it is not
// back at its baseline while they run.
func TestAbandonCatchesLeak(t *testing.T) {
	const hold = 2 * time.Second
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", writeRuntimeMetrics)
	mux.HandleFunc("/stream.m3u8", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			time.Sleep(hold) // parked, deaf to the client leaving
		}
		fmt.Fprint(w, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75\n"+
			"#EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:1,\na_5.m4s\n#EXT-X-PART:DURATION=0.25,URI=\"a_6_0.m4s\"\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := Abandon(context.Background(), AbandonOptions{
		URL: srv.URL + "/stream.m3u8", MetricsURL: srv.URL + "/metrics",
		Requests: 200, Concurrency: 50, CancelMin: 5 * time.Millisecond, CancelMax: 20 * time.Millisecond,
		SettleLimit: hold / 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.URL + "/stream.m3u8?_HLS_msn=7&_HLS_part=0"; res.Asked != want {
		t.Errorf("asked %s, want %s (the segment after the one in progress)", res.Asked, want)
	}
	if res.Back {
		t.Errorf("back after %v while 200 handlers were still parked", res.BackAfter)
	}
}
