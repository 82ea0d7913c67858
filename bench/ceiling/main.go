// Command ceiling finds how many 3 Mbit/s RTMP streams each server holds
// on this machine — onair, nginx-rtmp and, given a binary, MediaMTX — in
// one run, with the same input and the same load tool (package load), and
// measures CPU and memory per stream at fixed levels and at the ceiling.
// It prints Markdown for docs/benchmarks.md.
//
//	go build -o /tmp/onair ./cmd/onair
//	go run ./bench/ceiling -onair /tmp/onair -mediamtx /path/to/mediamtx
//
// A level is held when every publish was confirmed, no publisher was
// refused, dropped or fell more than -late behind its real-time schedule,
// and every sampled playlist kept listing new segments or parts (no stall
// of more than 3 target durations, no HTTP error) over the window. The
// search brackets up from -start by -step until a level is not held, then
// bisects down to -resolution. Every trial starts a fresh server.
//
// Everything listens on loopback; every process it starts is stopped
// before it returns.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onairhq/onair/bench/internal/machine"
	"github.com/onairhq/onair/load"
)

type config struct {
	onair, nginx, mediamtx, ffmpeg string
	onairFlags                     []string
	record                         bool
	systems                        []string
	input                          string
	inputDur                       time.Duration
	levels                         []int
	start, step, max, resolution   int
	trial                          trialConfig
	keep                           bool
}

func main() {
	var c config
	var levels, systems, onairFlags string
	flag.StringVar(&c.onair, "onair", "/tmp/onair", "onair binary (go build -o /tmp/onair ./cmd/onair)")
	flag.StringVar(&onairFlags, "onair-flags", "", "extra flags for onair serve, space-separated")
	flag.BoolVar(&c.record, "record", false, "servers record every broadcast: onair --record all (fMP4), nginx-rtmp record all (FLV)")
	flag.StringVar(&c.nginx, "nginx", "/usr/sbin/nginx", "nginx binary; the RTMP module is loaded from /usr/lib/nginx/modules (apt-get install nginx-light libnginx-mod-rtmp)")
	flag.StringVar(&c.mediamtx, "mediamtx", "", "MediaMTX binary (left out when empty)")
	flag.StringVar(&c.ffmpeg, "ffmpeg", "ffmpeg", "ffmpeg, to encode the input")
	flag.StringVar(&systems, "servers", "onair,nginx-rtmp,mediamtx", "servers to measure, in this order")
	flag.StringVar(&c.input, "input", "", "FLV to publish (default: encode the standard input, see onair load input)")
	flag.DurationVar(&c.inputDur, "input-duration", 30*time.Second, "length of the encoded input (it loops)")
	flag.StringVar(&levels, "levels", "10,200", "stream counts measured for CPU and memory per stream besides the ceiling")
	flag.IntVar(&c.start, "start", 100, "first level of the ceiling search")
	flag.IntVar(&c.step, "step", 100, "bracketing step of the ceiling search")
	flag.IntVar(&c.max, "max", 1200, "highest level tried")
	flag.IntVar(&c.resolution, "resolution", 25, "the search stops when held and not-held levels are this close")
	flag.Float64Var(&c.trial.rampRate, "ramp-rate", 20, "publishers started per second (200 in 10 s)")
	flag.DurationVar(&c.trial.settle, "settle", 10*time.Second, "wait after the last publish is confirmed, before the window")
	flag.DurationVar(&c.trial.window, "window", 30*time.Second, "measurement window with the playlists watched")
	flag.IntVar(&c.trial.sample, "sample", 10, "playlists polled per trial, spread over the streams")
	flag.DurationVar(&c.trial.lateAfter, "late", load.DefaultLateAfter, "a publisher this far behind its schedule is late (not held)")
	flag.DurationVar(&c.trial.confirmTimeout, "confirm-timeout", load.DefaultConfirmTimeout, "longest wait for a publish confirmation")
	flag.DurationVar(&c.trial.tick, "tick", load.DefaultTick, "load tool scheduler period: a publisher writes what came due within one tick in one write (OBS writes every packet: 10 ms is close)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (server logs and configurations)")
	flag.Parse()
	var err error
	if c.levels, err = intList(levels); err != nil {
		log.Fatalf("-levels: %v", err)
	}
	for _, bin := range []*string{&c.onair, &c.nginx, &c.mediamtx} {
		// Servers run in their trial's directory: a relative path would not resolve there.
		if strings.ContainsRune(*bin, os.PathSeparator) {
			if abs, err := filepath.Abs(*bin); err == nil {
				*bin = abs
			}
		}
	}
	c.systems = strings.Split(systems, ",")
	c.onairFlags = strings.Fields(onairFlags)
	if c.start < 1 || c.step < 1 || c.resolution < 1 || c.max < c.start || c.trial.rampRate <= 0 {
		log.Fatal("want -start, -step, -resolution, -ramp-rate positive and -max ≥ -start")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "ceiling-")
	if err != nil {
		return err
	}
	if c.keep {
		log.Printf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	c.trial.workDir = dir
	input := c.input
	if input == "" {
		input = filepath.Join(dir, "input.flv")
		log.Printf("encoding %v of input into %s", c.inputDur, input)
		if err := load.EncodeInput(ctx, c.ffmpeg, input, c.inputDur); err != nil {
			return err
		}
	}
	tags, err := load.ReadFLVFile(input)
	if err != nil {
		return err
	}
	if c.trial.media, err = load.PrepareMedia(tags, load.DefaultChunkSize); err != nil {
		return err
	}
	var systems []system
	for _, name := range c.systems {
		switch strings.TrimSpace(name) {
		case "onair":
			flags := c.onairFlags
			if c.record {
				flags = append(flags, "--record", "all")
			}
			systems = append(systems, onairSystem(c.onair, flags))
		case "nginx-rtmp":
			systems = append(systems, nginxSystem(c.nginx, c.record))
		case "mediamtx":
			if c.mediamtx != "" {
				systems = append(systems, mediamtxSystem(c.mediamtx))
			}
		default:
			return fmt.Errorf("-servers: unknown server %q", name)
		}
	}
	m := machine.Describe()
	started := time.Now()
	var results []*result
	for _, sys := range systems {
		r, err := measure(ctx, sys, c)
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name, err)
		}
		results = append(results, r)
	}
	m.LoadAfter = machine.LoadAverage()
	report(os.Stdout, c, m, systems, results, time.Since(started))
	return nil
}

// result is every trial of one server and its ceiling.
type result struct {
	system  string
	trials  map[int]*trial
	order   []int // levels in the order tried
	ceiling int   // most streams held; 0 if even the lowest level failed
	failAt  int   // lowest level tried that was not held above the ceiling; 0 if none
	hitMax  bool  // held up to -max
}

// measure runs the fixed levels, then the ceiling search, reusing any
// level already tried.
func measure(ctx context.Context, sys system, c config) (*result, error) {
	r := &result{system: sys.name, trials: map[int]*trial{}}
	try := func(n int) (bool, error) {
		if t, ok := r.trials[n]; ok {
			return t.held, nil
		}
		log.Printf("%s: %d streams", sys.name, n)
		t, err := runTrial(ctx, sys, n, c.trial)
		if err != nil {
			return false, err
		}
		r.trials[n], r.order = t, append(r.order, n)
		return t.held, nil
	}
	for _, n := range c.levels {
		if _, err := try(n); err != nil {
			return nil, err
		}
	}
	lo, hi := 0, 0
	for n, t := range r.trials {
		if t.held && n < c.start {
			lo = max(lo, n)
		}
	}
	for n := c.start; n <= c.max; n += c.step {
		held, err := try(n)
		if err != nil {
			return nil, err
		}
		if !held {
			hi = n
			break
		}
		lo = n
	}
	if hi == 0 {
		r.ceiling, r.hitMax = lo, true
		return r, nil
	}
	for hi-lo > c.resolution {
		mid := lo + (hi-lo)/2
		mid -= mid % 5
		if mid <= lo {
			break
		}
		held, err := try(mid)
		if err != nil {
			return nil, err
		}
		if held {
			lo = mid
		} else {
			hi = mid
		}
	}
	r.ceiling, r.failAt = lo, hi
	return r, nil
}
