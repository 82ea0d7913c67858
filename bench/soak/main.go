// Command soak runs onair under steady mixed load for a long time and samples
// the process, to show that goroutines, heap, resident memory and file
// descriptors stay flat: publishers that drop and reconnect (within the
// reconnect grace and after it), HLS viewers reloading playlists and fetching
// every segment, and chat viewers who post, leave and come back.
//
//	go build -o /tmp/onair ./cmd/onair
//	go run ./bench/soak -onair /tmp/onair -duration 30m
//
// It prints one Markdown table row per sample and a verdict, and exits 1 when
// a figure grew (second quarter against last quarter of the run) or onair
// died. Everything listens on loopback; every process it starts is stopped
// before it returns.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type config struct {
	onair       string
	duration    time.Duration
	interval    time.Duration
	channels    int
	viewers     int
	chatters    int
	chatEvery   time.Duration
	pubLife     time.Duration
	chatLife    time.Duration
	onairFlags  []string
	keep        bool
	growthLimit float64
}

func main() {
	var c config
	flag.StringVar(&c.onair, "onair", "/tmp/onair", "onair binary (go build -o /tmp/onair ./cmd/onair)")
	flag.DurationVar(&c.duration, "duration", 30*time.Minute, "length of the run")
	flag.DurationVar(&c.interval, "interval", time.Minute, "time between samples")
	flag.IntVar(&c.channels, "channels", 3, "channels, each with a publisher that keeps reconnecting")
	flag.IntVar(&c.viewers, "viewers", 30, "HLS viewers, spread over the channels")
	flag.IntVar(&c.chatters, "chatters", 200, "chat viewers, spread over the channels")
	flag.DurationVar(&c.chatEvery, "chat-every", 10*time.Second, "how often each chat viewer posts")
	flag.DurationVar(&c.pubLife, "publisher-life", 90*time.Second, "mean time a publisher stays connected before it drops or stops")
	flag.DurationVar(&c.chatLife, "chat-life", 3*time.Minute, "mean time a chat viewer stays before leaving and coming back")
	flag.Float64Var(&c.growthLimit, "growth-limit", 0.15, "largest growth allowed between the second and last quarter (0.15: 15 %)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (onair's log, the source clip)")
	flag.Parse()
	c.onairFlags = flag.Args()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, c)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) (bool, error) {
	dir, err := os.MkdirTemp("", "onair-soak-")
	if err != nil {
		return false, err
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "soak: work directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	clip, err := makeClip(ctx, dir)
	if err != nil {
		return false, err
	}
	srv, err := startOnair(ctx, c, dir)
	if err != nil {
		return false, err
	}
	defer srv.stop()

	runCtx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var load loadCounters
	var wg sync.WaitGroup
	for i := range c.channels {
		wg.Go(func() { publishLoop(runCtx, srv, clip, i, c.pubLife, &load) })
	}
	for i := range c.viewers {
		wg.Go(func() { viewLoop(runCtx, srv, i%c.channels, &load) })
	}
	for i := range c.chatters {
		wg.Go(func() { chatLoop(runCtx, srv, i, i%c.channels, c.chatEvery, c.chatLife, &load) })
	}

	fmt.Printf("onair soak: %s, %d channels (publishers reconnecting every ~%s), %d HLS viewers, %d chat viewers (a post every %s, back every ~%s)\n\n",
		c.duration, c.channels, c.pubLife, c.viewers, c.chatters, c.chatEvery, c.chatLife)
	fmt.Println(tableHeader)
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	prev := load.snapshot()
	died := false
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-srv.exited:
			died = true
			break loop
		case <-tick.C:
		}
		s, err := srv.sample(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: sample: %v\n", err)
			continue
		}
		now := load.snapshot()
		s.at = time.Since(start)
		s.load = now.since(prev, c.interval)
		prev = now
		samples = append(samples, s)
		fmt.Println(s.row())
	}
	cancel()
	wg.Wait()
	if died {
		fmt.Printf("\nonair exited during the soak:\n%s\n", srv.logTail())
		return false, nil
	}
	fmt.Println()
	fmt.Println(load.snapshot().summary())
	if why := load.chatReasons(); why != "" {
		fmt.Println("chat connections that failed:", why)
	}
	ok := verdict(samples, c.growthLimit)
	if n := srv.errorLines(); n > 0 {
		fmt.Printf("onair logged %d lines at level ERROR (see -keep)\n", n)
	}
	return ok, nil
}
