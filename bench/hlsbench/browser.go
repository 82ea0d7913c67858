package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/chromedp/chromedp"
)

// playerPage plays ?src= with hls.js using the onair watch page's hls.js
// settings (web/static/player.js), for both servers, and records hls.js's
// own live-edge latency every 250 ms and every stall.
const playerPage = `<!doctype html>
<meta charset="utf-8">
<video id="v" muted playsinline></video>
<script src="/hls.min.js"></script>
<script>
const src = new URLSearchParams(location.search).get("src");
const b = window.bench = {samples: [], waiting: 0, stalled: 0, errors: [], playing: false};
const v = document.getElementById("v");
const hls = new Hls({
  lowLatencyMode: true,
  maxLiveSyncPlaybackRate: 1.2,
  liveDurationInfinity: true,
  backBufferLength: 30,
  liveSyncOnStallIncrease: 0.5,
  enableWorker: true,
});
b.version = Hls.version;
hls.on(Hls.Events.ERROR, (_, d) => {
  if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) b.stalled++;
  b.errors.push(d.details + (d.fatal ? " (fatal)" : ""));
});
v.addEventListener("waiting", () => { if (b.playing) b.waiting++; });
v.addEventListener("playing", () => { if (!b.playing) { b.playing = true; b.firstPlay = performance.now(); } });
setInterval(() => {
  if (b.playing) b.samples.push([performance.now() - b.firstPlay, hls.latency, hls.targetLatency]);
}, 250);
hls.loadSource(src);
hls.attachMedia(v);
v.play().catch(e => b.errors.push("play: " + e));
</script>
`

// pageServer serves the player page and hls.js on a loopback port.
type pageServer struct {
	srv *http.Server
	url string
}

func startPageServer(hlsJS string) (*pageServer, error) {
	js, err := os.ReadFile(hlsJS)
	if err != nil {
		return nil, fmt.Errorf("reading hls.js: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, playerPage)
	})
	mux.HandleFunc("/hls.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(js)
	})
	s := &pageServer{srv: &http.Server{Handler: mux}, url: "http://" + l.Addr().String() + "/"}
	go s.srv.Serve(l)
	return s, nil
}

func (s *pageServer) close() error { return s.srv.Close() }

// playResult is one browser run.
type playResult struct {
	Version  string       `json:"version"`
	Samples  [][3]float64 `json:"samples"` // ms since playing, latency s, target s
	Waiting  int          `json:"waiting"`
	Stalled  int          `json:"stalled"`
	Errors   []string     `json:"errors"`
	Playing  bool         `json:"playing"`
	StartMS  float64      `json:"firstPlay"`
	median   float64
	p95, max float64
}

// play opens the page in a fresh headless Chromium, plays src for dur, and
// returns what the page recorded.
func play(ctx context.Context, chromium, page, src string, dur time.Duration) (*playResult, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	tctx, cancelT := context.WithTimeout(bctx, dur+30*time.Second)
	defer cancelT()
	if _, err := chromedp.Run(tctx, chromedp.Navigate(page+"?src="+url.QueryEscape(src))); err != nil {
		return nil, fmt.Errorf("opening the player page: %w", err)
	}
	select {
	case <-tctx.Done():
		return nil, tctx.Err()
	case <-time.After(dur):
	}
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[string](`JSON.stringify(window.bench)`))
	if err != nil {
		return nil, fmt.Errorf("reading the page's record: %w", err)
	}
	var r playResult
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("decoding the page's record: %w", err)
	}
	var lat []float64
	for _, s := range r.Samples {
		if s[0] >= 5000 { // after hls.js settled on its target
			lat = append(lat, s[1])
		}
	}
	sort.Float64s(lat)
	if n := len(lat); n > 0 {
		r.median, r.p95, r.max = lat[n/2], lat[n*95/100], lat[n-1]
	}
	return &r, nil
}
