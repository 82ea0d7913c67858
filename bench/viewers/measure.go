package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
	"github.com/onairhq/onair/load"
	"github.com/onairhq/onair/segmenter"
)

// variantResult is one variant's run.
type variantResult struct {
	variant string
	play    load.PlayResult
	window  time.Duration
	// cpu is onair's (its children's included) share of one core over the
	// window; toolCPU that of this process (the players).
	cpu, toolCPU float64
	// RSS of onair idle (published, no player), mean and peak over the window.
	idleRSS, rss, peakRSS int64
	// onair's goroutines idle and at most over the window.
	idleGoroutines, peakGoroutines int
	why                            []string // what went wrong besides the players' figures
}

// measureVariant publishes to a fresh onair, plays it with c.players
// players and samples onair over the window.
func measureVariant(ctx context.Context, c config, dir, input, variant string) (*variantResult, error) {
	r := &variantResult{variant: variant}
	s, err := startPublished(ctx, c, dir, input, variant)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	pid, self := s.p.Pid(), os.Getpid()
	r.idleRSS, r.idleGoroutines = procstat.SampleTree(pid).RSS, s.goroutines(ctx)

	pctx, cancel := context.WithTimeout(ctx, c.ramp+c.settle+c.window)
	defer cancel()
	play, err := load.StartPlay(pctx, load.PlayOptions{URL: s.entryURL, Players: c.players, Ramp: c.ramp, Settle: c.settle})
	if err != nil {
		return nil, err
	}
	if !sleep(pctx, c.ramp+c.settle) {
		play.Wait()
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	u0, tool0, t0 := procstat.SampleTree(pid), cpuOf(self), time.Now()
	var rssSum, samples int64
	for sleep(pctx, time.Second) {
		u := procstat.SampleTree(pid)
		rssSum, samples, r.peakRSS = rssSum+u.RSS, samples+1, max(r.peakRSS, u.RSS)
		r.peakGoroutines = max(r.peakGoroutines, s.goroutines(ctx))
		if dead, err := s.p.Exited(); dead {
			r.why = append(r.why, fmt.Sprintf("onair exited: %v", err))
			break
		}
		if dead, err := s.pub.Exited(); dead {
			r.why = append(r.why, fmt.Sprintf("the publisher exited: %v", err))
			break
		}
	}
	u1, tool1 := procstat.SampleTree(pid), cpuOf(self)
	r.window = time.Since(t0)
	cancel()
	r.play = play.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r.cpu = (u1.CPU - u0.CPU).Seconds() / r.window.Seconds()
	r.toolCPU = (tool1 - tool0).Seconds() / r.window.Seconds()
	if samples > 0 {
		r.rss = rssSum / samples
	}
	p := r.play
	log.Printf("%s: %d of %d players held, %d stalls, %d errors; onair CPU %.1f %%, RSS %s; blocking p50 %v p99 %v",
		variant, p.Held, p.Players, p.Stalls, p.ErrorCount(), 100*r.cpu, mib(r.rss), p.Blocking.P50, p.Blocking.P99)
	if err := writeJSON(filepath.Join(s.dir, "players.json"), p); err != nil {
		return nil, err
	}
	return r, nil
}

// abandonResult is the abandon run: the load tool's result and onair's RSS.
type abandonResult struct {
	load.AbandonResult
	stalled                      bool // the playlist stood still before the burst
	rssBefore, rssPeak, rssAfter int64
}

// measureAbandon drops the publisher of a fresh LL-HLS onair and sends the
// burst while the playlist is stalled.
func measureAbandon(ctx context.Context, c config, dir, input string) (*abandonResult, error) {
	s, err := startPublished(ctx, c, dir, input, segmenter.VariantLowLatency)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	s.dropPublisher()
	if !sleep(ctx, 2*time.Second) { // onair has seen the connection drop
		return nil, ctx.Err()
	}
	r := &abandonResult{}
	a, errA := s.get(ctx, s.mediaURL)
	sleep(ctx, time.Second)
	b, errB := s.get(ctx, s.mediaURL)
	r.stalled = errA == nil && errB == nil && a == b
	if !r.stalled {
		log.Printf("abandon: the playlist is not standing still (%v, %v)", errA, errB)
	}

	pid := s.p.Pid()
	r.rssBefore = procstat.SampleTree(pid).RSS
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // RSS peak over the burst and its aftermath
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.rssPeak = max(r.rssPeak, procstat.SampleTree(pid).RSS)
			}
		}
	}()
	o := c.abandon
	o.URL, o.MetricsURL, o.GCURL = s.entryURL, s.metricsURL, s.gcURL
	res, err := load.Abandon(ctx, o)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	r.AbandonResult = res
	r.rssAfter = procstat.SampleTree(pid).RSS
	log.Printf("abandon: goroutines %d → %d → %d, back %v after %v", res.Before.Goroutines, res.Peak.Goroutines, res.After.Goroutines, res.Back, res.BackAfter)
	if err := writeJSON(filepath.Join(s.dir, "abandon.json"), res); err != nil {
		return nil, err
	}
	return r, nil
}

// startPublished starts a fresh onair serving variant in a directory of
// its own under dir and publishes the input to it for c.warmup.
func startPublished(ctx context.Context, c config, dir, input, variant string) (*onairServer, error) {
	sdir, err := os.MkdirTemp(dir, variant+"-")
	if err != nil {
		return nil, err
	}
	s, err := startOnair(ctx, c, sdir, variant)
	if err != nil {
		return nil, err
	}
	if err := s.publish(ctx, c.ffmpeg, input); err != nil {
		s.stop()
		return nil, err
	}
	if !sleep(ctx, c.warmup) {
		s.stop()
		return nil, ctx.Err()
	}
	return s, nil
}

func cpuOf(pid int) time.Duration {
	d, _ := procstat.CPUTime(pid, false)
	return d
}
