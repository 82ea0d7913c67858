// Command hlsbench measures onair's ingest-to-HLS path side by side with
// nginx-rtmp (HLS on) on this machine, with the same input, and prints the
// results as Markdown tables.
//
//	go build -o /tmp/onair ./cmd/onair
//	go run ./bench/hlsbench -onair /tmp/onair
//
// Everything listens on loopback; every process it starts is stopped before
// it returns. It takes about 12 minutes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
)

type config struct {
	onair, nginx, chromium, hlsJS string
	streams                       []int
	warmup, window                time.Duration
	trials                        int
	trialDur                      time.Duration
	runs                          int
	playDur                       time.Duration
	skip                          map[string]bool
	bitrate                       float64 // input bits per second, for the memory target
	keep                          bool
	onairFlags                    []string
}

func main() {
	var c config
	var streams, skip string
	flag.StringVar(&c.onair, "onair", "/tmp/onair", "onair binary (go build -o /tmp/onair ./cmd/onair)")
	flag.StringVar(&c.nginx, "nginx", "/usr/sbin/nginx", "nginx binary with libnginx-mod-rtmp available")
	flag.StringVar(&c.chromium, "chromium", "/usr/bin/chromium", "Chromium binary")
	flag.StringVar(&c.hlsJS, "hlsjs", "web/static/vendor/hls.min.js", "hls.js build to play with")
	flag.StringVar(&streams, "streams", "1,10", "simultaneous published streams for the CPU and memory runs")
	flag.DurationVar(&c.warmup, "warmup", 10*time.Second, "time before the CPU and memory window opens")
	flag.DurationVar(&c.window, "window", 30*time.Second, "CPU and memory measurement window")
	flag.IntVar(&c.trials, "trials", 3, "publishes per server for the listing-latency runs")
	flag.DurationVar(&c.trialDur, "trial", 20*time.Second, "length of one listing-latency publish")
	flag.IntVar(&c.runs, "runs", 5, "hls.js runs per server")
	flag.DurationVar(&c.playDur, "play", 30*time.Second, "length of one hls.js run")
	flag.StringVar(&skip, "skip", "", "comma-separated phases to skip: resources,listing,player")
	var onairFlags string
	flag.StringVar(&onairFlags, "onair-flags", "", "extra flags for onair serve, space-separated")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, configs) for inspection")
	flag.Parse()
	for _, s := range strings.Split(streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 10 {
			log.Fatalf("bad -streams %q: want numbers from 1 to 10", streams)
		}
		c.streams = append(c.streams, n)
	}
	c.onairFlags = strings.Fields(onairFlags)
	c.skip = map[string]bool{}
	for _, s := range strings.Split(skip, ",") {
		c.skip[strings.TrimSpace(s)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "hlsbench-")
	if err != nil {
		return err
	}
	if c.keep {
		log.Printf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	input := filepath.Join(dir, "input.flv")
	log.Printf("encoding 30 s of input into %s", input)
	if err := makeInput(ctx, input, 30*time.Second); err != nil {
		return err
	}
	st, err := os.Stat(input)
	if err != nil {
		return err
	}
	c.bitrate = float64(st.Size()*8) / 30
	tags, err := readFLV(input)
	if err != nil {
		return err
	}
	fmt.Printf("Input: %.2f Mbit/s overall (video 3 Mbit/s + AAC 128 kbit/s), 30 s, looped.\n\n", c.bitrate/1e6)

	if !c.skip["resources"] {
		if err := resources(ctx, c, dir, input); err != nil {
			return err
		}
	}
	if !c.skip["listing"] {
		if err := listingLatency(ctx, c, dir, tags); err != nil {
			return err
		}
	}
	if !c.skip["player"] {
		if err := player(ctx, c, dir, input); err != nil {
			return err
		}
	}
	return nil
}

// startServer starts a fresh instance of one system under test in its own
// directory.
func startServer(ctx context.Context, c config, dir, which string, nchan int) (server, error) {
	d, err := os.MkdirTemp(dir, which+"-")
	if err != nil {
		return nil, err
	}
	// nginx's workers run as nobody and must reach the HLS directory.
	for _, p := range []string{dir, d} {
		if err := os.Chmod(p, 0o755); err != nil {
			return nil, err
		}
	}
	if which == "onair" {
		return startOnair(ctx, c.onair, d, nchan, c.onairFlags)
	}
	return startNginx(ctx, c.nginx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// resourceResult is one CPU/memory run.
type resourceResult struct {
	server               string
	streams              int
	cpu                  float64       // share of one core, whole server
	cpuChildren          float64       // onair only: including its moderation decoders
	idleRSS, rss, rssAll int64         // rssAll includes onair's decoders
	window               time.Duration // media listed in stream 0's playlist at the end
}

func resources(ctx context.Context, c config, dir, input string) error {
	var results []resourceResult
	for _, n := range c.streams {
		for _, which := range []string{"onair", "nginx-rtmp"} {
			r, err := resourceRun(ctx, c, dir, input, which, n)
			if err != nil {
				return fmt.Errorf("%s with %d streams: %w", which, n, err)
			}
			results = append(results, r)
		}
	}
	fmt.Printf("### CPU and memory (%v steady state after %v warm-up)\n\n", c.window, c.warmup)
	fmt.Println("| server | streams | CPU, whole server (% of one core) | CPU per stream | RSS idle | RSS loaded | RSS per stream | playlist window | 2 × bitrate × window |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		per := float64(r.rss-r.idleRSS) / float64(r.streams)
		held := mib(int64(2 * c.bitrate / 8 * r.window.Seconds()))
		fmt.Printf("| %s | %d | %.1f %% | %.2f %% | %s | %s | %s | %.1f s | %s |\n", r.server, r.streams, 100*r.cpu, 100*r.cpu/float64(r.streams),
			mib(r.idleRSS), mib(r.rss), mib(int64(per)), r.window.Seconds(), held)
		if r.server == "onair" {
			fmt.Printf("| onair + moderation decoders | %d | %.1f %% | %.2f %% | | %s | %s | | |\n", r.streams, 100*r.cpuChildren,
				100*r.cpuChildren/float64(r.streams), mib(r.rssAll), mib(int64(float64(r.rssAll-r.idleRSS)/float64(r.streams))))
		}
	}
	fmt.Println()
	return nil
}

// playlistWindow adds up the segment durations a media playlist lists.
func playlistWindow(ctx context.Context, url string) time.Duration {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	p, err := parsePlaylist(res.Body)
	if err != nil {
		return 0
	}
	var d time.Duration
	for _, it := range p.items {
		if !it.part {
			d += it.dur
		}
	}
	return d
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func resourceRun(ctx context.Context, c config, dir, input, which string, n int) (resourceResult, error) {
	r := resourceResult{server: which, streams: n}
	srv, err := startServer(ctx, c, dir, which, n)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	if err := sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	r.idleRSS = procstat.Sample(srv.pids(), false).RSS
	log.Printf("%s: %d streams, idle RSS %s", which, n, mib(r.idleRSS))
	var pubs []*procstat.Proc
	defer func() {
		for _, p := range pubs {
			p.Stop()
		}
	}()
	for i := range n {
		p, err := startFFmpegPublisher(input, srv.publishURL(i), filepath.Join(dir, fmt.Sprintf("pub-%s-%d-%d.log", which, n, i)))
		if err != nil {
			return r, err
		}
		pubs = append(pubs, p)
	}
	if err := sleep(ctx, c.warmup); err != nil {
		return r, err
	}
	withChildren := func(on bool) {
		if o, ok := srv.(*onairServer); ok {
			o.withChildren = on
		}
	}
	withChildren(false)
	a := procstat.Sample(srv.pids(), false)
	withChildren(true)
	aAll := procstat.Sample(srv.pids(), false)
	t0 := time.Now()
	var rssSum, rssAllSum int64
	var k int64
	for time.Since(t0) < c.window {
		if err := sleep(ctx, time.Second); err != nil {
			return r, err
		}
		withChildren(false)
		rssSum += procstat.Sample(srv.pids(), false).RSS
		withChildren(true)
		rssAllSum += procstat.Sample(srv.pids(), false).RSS
		k++
		for i, p := range pubs {
			if ended, err := p.Exited(); ended {
				return r, fmt.Errorf("publisher %d ended: %v", i, err)
			}
		}
	}
	r.window = playlistWindow(ctx, srv.playlistURL(0))
	withChildren(false)
	b := procstat.Sample(srv.pids(), false)
	withChildren(true)
	bAll := procstat.Sample(srv.pids(), false)
	el := time.Since(t0).Seconds()
	r.cpu = (b.CPU - a.CPU).Seconds() / el
	r.cpuChildren = (bAll.CPU - aAll.CPU).Seconds() / el
	r.rss, r.rssAll = rssSum/k, rssAllSum/k
	if which != "onair" {
		r.cpuChildren, r.rssAll = r.cpu, r.rss
	}
	log.Printf("%s: %d streams, CPU %.1f %%, RSS %s", which, n, 100*r.cpu, mib(r.rss))
	return r, nil
}

// listingLatency publishes with the benchmark's own RTMP client, which knows
// when each frame left, and watches the playlist.
func listingLatency(ctx context.Context, c config, dir string, tags []tag) error {
	type trial struct {
		startToFirst, keyToFirst, startToSeg, keyToSeg time.Duration
		parts, segs                                    delays
	}
	res := map[string][]trial{}
	for _, which := range []string{"onair", "nginx-rtmp"} {
		srv, err := startServer(ctx, c, dir, which, c.trials)
		if err != nil {
			return err
		}
		for i := range c.trials {
			tctx, cancel := context.WithTimeout(ctx, c.trialDur)
			type watched struct {
				items []listed
				err   error
			}
			wch := make(chan watched, 1)
			go func() {
				items, err := watchPlaylist(tctx, srv.playlistURL(i), which == "onair", 5*time.Millisecond)
				wch <- watched{items, err}
			}()
			start, frames, perr := publishTimed(tctx, srv.publishURL(i), tags)
			<-tctx.Done()
			w := <-wch
			cancel()
			if perr != nil || w.err != nil {
				srv.stop()
				return fmt.Errorf("%s trial %d: publish: %v, watch: %v", which, i, perr, w.err)
			}
			if len(frames) == 0 || len(w.items) == 0 {
				srv.stop()
				return fmt.Errorf("%s trial %d: %d frames sent, %d items listed", which, i, len(frames), len(w.items))
			}
			var t trial
			key := frames[0].at
			for _, f := range frames {
				if f.key {
					key = f.at
					break
				}
			}
			for _, it := range w.items {
				if t.startToFirst == 0 {
					t.startToFirst, t.keyToFirst = it.at.Sub(start), it.at.Sub(key)
				}
				if !it.part && t.startToSeg == 0 {
					t.startToSeg, t.keyToSeg = it.at.Sub(start), it.at.Sub(key)
				}
			}
			if os.Getenv("HLSBENCH_DEBUG") != "" {
				for _, it := range w.items {
					log.Printf("  %v %v %s", it.at.Sub(key).Round(time.Millisecond), it.dur, it.uri)
				}
			}
			t.parts = matchDelays(w.items, frames, true, 2*time.Second)
			t.segs = matchDelays(w.items, frames, false, 2*time.Second)
			log.Printf("%s trial %d: first item %v after publish start, %v after first keyframe; %d parts, %d segments timed",
				which, i, t.startToFirst.Round(time.Millisecond), t.keyToFirst.Round(time.Millisecond), len(t.parts.afterLast), len(t.segs.afterLast))
			res[which] = append(res[which], t)
		}
		if err := srv.stop(); err != nil {
			return fmt.Errorf("stopping %s: %w", which, err)
		}
	}

	fmt.Printf("### Publish to first playable media (%d publishes each; median [min–max])\n\n", c.trials)
	fmt.Println("| server | publish start → first part listed | first keyframe sent → first part listed | publish start → first segment listed | first keyframe sent → first segment listed |")
	fmt.Println("|---|---|---|---|---|")
	for _, which := range []string{"onair", "nginx-rtmp"} {
		var a, b, s, k []time.Duration
		for _, t := range res[which] {
			s, k = append(s, t.startToSeg), append(k, t.keyToSeg)
			if which == "onair" {
				a, b = append(a, t.startToFirst), append(b, t.keyToFirst)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", which, spread(a), spread(b), spread(s), spread(k))
	}
	fmt.Printf("\n### Listing delay (after the first 2 s; all publishes pooled; p50 / p95 / max)\n\n")
	fmt.Println("| server | object | timed | after its last video frame was sent | after the next frame (which closes it) was sent | unmatched |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, which := range []string{"onair", "nginx-rtmp"} {
		for _, kind := range []string{"part", "segment"} {
			var last, closing []time.Duration
			un := 0
			for _, t := range res[which] {
				d := t.segs
				if kind == "part" {
					d = t.parts
				}
				last, closing = append(last, d.afterLast...), append(closing, d.afterClose...)
				un += d.unmatched
			}
			if len(last) == 0 && un == 0 {
				continue
			}
			fmt.Printf("| %s | %s | %d | %s | %s | %d |\n", which, kind, len(last), pcts(last), pcts(closing), un)
		}
	}
	fmt.Println()
	return nil
}

func sortDur(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func spread(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	s := sortDur(d)
	return fmt.Sprintf("%s [%s–%s]", ms(s[len(s)/2]), ms(s[0]), ms(s[len(s)-1]))
}

func pcts(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	s := sortDur(d)
	return fmt.Sprintf("%s / %s / %s", ms(s[len(s)/2]), ms(s[len(s)*95/100]), ms(s[len(s)-1]))
}

// player runs hls.js in headless Chromium against each server's live stream.
func player(ctx context.Context, c config, dir, input string) error {
	page, err := startPageServer(c.hlsJS)
	if err != nil {
		return err
	}
	defer page.close()
	res := map[string][]*playResult{}
	for _, which := range []string{"onair", "nginx-rtmp"} {
		srv, err := startServer(ctx, c, dir, which, 1)
		if err != nil {
			return err
		}
		pub, err := startFFmpegPublisher(input, srv.publishURL(0), filepath.Join(dir, "pub-player-"+which+".log"))
		if err != nil {
			srv.stop()
			return err
		}
		err = sleep(ctx, 12*time.Second) // a full playlist window
		for i := 0; err == nil && i < c.runs; i++ {
			var r *playResult
			r, err = play(ctx, c.chromium, page.url, srv.entryURL(0), c.playDur)
			if err == nil {
				log.Printf("%s run %d: latency median %.2f s, max %.2f s, waiting %d, stalled %d, errors %v",
					which, i, r.median, r.max, r.Waiting, r.Stalled, r.Errors)
				res[which] = append(res[which], r)
			}
		}
		pub.Stop()
		srv.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", which, err)
		}
	}
	fmt.Printf("### hls.js in headless Chromium (%d runs × %v each, latency = hls.latency sampled every 250 ms from 5 s after playback started)\n\n", c.runs, c.playDur)
	fmt.Println("| server | run | hls.js | time to first frame | latency median | p95 | max | target (hls.targetLatency) | waiting events | BUFFER_STALLED_ERROR | other hls.js errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, which := range []string{"onair", "nginx-rtmp"} {
		for i, r := range res[which] {
			target := 0.0
			if n := len(r.Samples); n > 0 {
				target = r.Samples[n-1][2]
			}
			other := "—"
			var errs []string
			for _, e := range r.Errors {
				if e != "bufferStalledError" {
					errs = append(errs, e)
				}
			}
			if len(errs) > 0 {
				other = strings.Join(errs, ", ")
			}
			fmt.Printf("| %s | %d | %s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %d | %d | %s |\n", which, i+1, r.Version,
				r.StartMS/1000, r.median, r.p95, r.max, target, r.Waiting, r.Stalled, other)
		}
	}
	fmt.Println()
	return nil
}
