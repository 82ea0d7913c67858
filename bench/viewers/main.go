// Command viewers measures one onair origin serving many players of one
// live stream: for each HLS variant (LL-HLS, fMP4, MPEG-TS) a fresh onair
// with one channel, one 720p30 3 Mbit/s x264 stream with B-frames
// published by ffmpeg, and simulated players (package load, as `onair
// load play`) over a window, while onair's CPU and memory are sampled;
// then, on a fresh LL-HLS origin whose publisher dropped (the playlist
// stalled inside the reconnect grace period), a burst of abandoned
// blocking reloads (as `onair load abandon`), followed until onair's
// goroutines and live heap are back at their baseline. It prints
// Markdown for docs/benchmarks.md.
//
//	go build -o /tmp/onair ./cmd/onair
//	go run ./bench/viewers -onair /tmp/onair
//
// The players run on the same machine as onair: their own CPU is printed
// beside onair's. Everything listens on loopback; every process it starts
// is stopped before it returns.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/onairhq/onair/bench/internal/machine"
	"github.com/onairhq/onair/load"
	"github.com/onairhq/onair/segmenter"
)

type config struct {
	onair, ffmpeg string
	onairFlags    []string
	variants      []string
	input         string
	inputDur      time.Duration
	players       int
	ramp, settle  time.Duration
	window        time.Duration
	warmup        time.Duration // after the playlist appears, before the players start
	abandon       load.AbandonOptions
	keep          bool
}

func main() {
	var c config
	var variants, onairFlags string
	flag.StringVar(&c.onair, "onair", "/tmp/onair", "onair binary (go build -o /tmp/onair ./cmd/onair)")
	flag.StringVar(&onairFlags, "onair-flags", "", "extra flags for onair serve, space-separated")
	flag.StringVar(&c.ffmpeg, "ffmpeg", "ffmpeg", "ffmpeg, to encode the input and publish it")
	flag.StringVar(&variants, "variants", "lowlatency,fmp4,mpegts", "HLS variants measured, each on a fresh onair")
	flag.StringVar(&c.input, "input", "", "FLV to publish (default: encode 720p30 H.264 with B-frames, 3 Mbit/s, and AAC, see onair load input)")
	flag.DurationVar(&c.inputDur, "input-duration", 30*time.Second, "length of the encoded input (it loops)")
	flag.IntVar(&c.players, "players", 1000, "players per variant")
	flag.DurationVar(&c.ramp, "ramp", 10*time.Second, "the players' starts are spread over this long")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "wait after the ramp before the window")
	flag.DurationVar(&c.window, "window", 60*time.Second, "measurement window per variant")
	flag.DurationVar(&c.warmup, "warmup", 8*time.Second, "publish this long before the players start (a full playlist window)")
	flag.IntVar(&c.abandon.Requests, "abandon", 20000, "abandoned blocking reloads on a stalled LL-HLS playlist (0: skip)")
	flag.IntVar(&c.abandon.Concurrency, "abandon-concurrency", load.DefaultAbandonConcurrency, "abandoned requests in flight at once")
	flag.DurationVar(&c.abandon.CancelMin, "cancel-min", load.DefaultCancelMin, "shortest time before an abandoned request is cancelled")
	flag.DurationVar(&c.abandon.CancelMax, "cancel-max", load.DefaultCancelMax, "longest time before an abandoned request is cancelled")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (onair's and ffmpeg's logs, the players' JSON reports)")
	flag.Parse()
	if c.players < 1 || c.window <= 0 {
		log.Fatal("want -players ≥ 1 and a positive -window")
	}
	for _, v := range strings.Split(variants, ",") {
		switch v = strings.TrimSpace(v); v {
		case segmenter.VariantLowLatency, segmenter.VariantFMP4, segmenter.VariantMPEGTS:
			c.variants = append(c.variants, v)
		case "":
		default:
			log.Fatalf("-variants: unknown variant %q", v)
		}
	}
	c.onairFlags = strings.Fields(onairFlags)
	if strings.ContainsRune(c.onair, os.PathSeparator) {
		if abs, err := filepath.Abs(c.onair); err == nil {
			c.onair = abs // onair runs in its trial's directory
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "viewers-")
	if err != nil {
		return err
	}
	if c.keep {
		log.Printf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	input := c.input
	if input == "" {
		input = filepath.Join(dir, "input.flv")
		log.Printf("encoding %v of input into %s", c.inputDur, input)
		if err := load.EncodeInput(ctx, c.ffmpeg, input, c.inputDur); err != nil {
			return err
		}
	}
	m := machine.Describe()
	started := time.Now()
	var results []*variantResult
	for _, v := range c.variants {
		log.Printf("%s: %d players", v, c.players)
		r, err := measureVariant(ctx, c, dir, input, v)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		results = append(results, r)
	}
	var ab *abandonResult
	if c.abandon.Requests > 0 {
		log.Printf("abandon: %d requests", c.abandon.Requests)
		if ab, err = measureAbandon(ctx, c, dir, input); err != nil {
			return fmt.Errorf("abandon: %w", err)
		}
	}
	m.LoadAfter = machine.LoadAverage()
	report(os.Stdout, c, m, input, results, ab, time.Since(started))
	return nil
}
