package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
	"github.com/onairhq/onair/load"
)

// trialConfig is what every trial shares.
type trialConfig struct {
	media          *load.Media
	rampRate       float64 // publishers started per second
	settle         time.Duration
	window         time.Duration
	sample         int
	lateAfter      time.Duration
	confirmTimeout time.Duration
	tick           time.Duration
	workDir        string
}

// trial is one server at one number of streams.
type trial struct {
	system    string
	n         int
	held      bool
	why       []string
	sum       load.Summary
	schedLag  time.Duration
	fresh     int
	sampled   int
	cpu       float64 // server, cores (1 = one core busy) over the window
	idleRSS   int64
	rss       int64 // mean over the window, server process tree
	files     int64 // mean over the window, HLS files on tmpfs
	toolCPU   float64
	window    time.Duration
	startedAt time.Time
}

// memPerStream is the memory the streams added, per stream: RSS over
// idle plus HLS files on tmpfs.
func (t *trial) memPerStream() float64 {
	return float64(t.rss-t.idleRSS+t.files) / float64(t.n)
}

// runTrial starts a fresh server, publishes n streams over the ramp, waits
// for every publish to be confirmed or to fail, lets the server settle and
// then measures it over the window while the watcher polls the sampled
// playlists.
func runTrial(ctx context.Context, sys system, n int, c trialConfig) (*trial, error) {
	t := &trial{system: sys.name, n: n, startedAt: time.Now()}
	dir, err := os.MkdirTemp(c.workDir, fmt.Sprintf("%s-%d-", strings.ToLower(sys.name), n))
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers run as nobody
		return nil, err
	}
	srv, err := sys.start(ctx, dir, n)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	t.idleRSS = procstat.SampleTree(srv.pid()).RSS

	target, err := load.ParseTarget(srv.rtmpURL())
	if err != nil {
		return nil, err
	}
	streams := make([]load.Stream, n)
	for i := range streams {
		streams[i] = srv.stream(i)
	}
	ramp := time.Duration(float64(n) / c.rampRate * float64(time.Second))
	run, err := load.StartPublish(ctx, load.PublishOptions{
		Target: target, Media: c.media, Streams: streams, Ramp: ramp,
		ConfirmTimeout: c.confirmTimeout, LateAfter: c.lateAfter, Tick: c.tick,
	})
	if err != nil {
		return nil, err
	}
	defer run.Wait()
	defer run.Stop()

	// Every publisher started and either confirmed or failed.
	deadline := time.Now().Add(ramp + c.confirmTimeout + 5*time.Second)
	for {
		p := run.Progress()
		if p.Started == n && p.Connecting == 0 || time.Now().After(deadline) {
			log.Printf("%s %d: %d confirmed, %d refused, %d failed after %v", sys.name, n, p.Live, p.Refused, p.Failed, p.Elapsed.Round(time.Second))
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if err := sleep(ctx, c.settle); err != nil {
		return nil, err
	}

	var urls []string
	k := min(c.sample, n)
	for j := range k {
		urls = append(urls, strings.ReplaceAll(srv.playlistURL(), "{channel}", streams[j*n/k].Channel))
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := load.StartWatch(wctx, load.WatchOptions{URLs: urls})
	self := os.Getpid()
	u0, tool0, t0 := procstat.SampleTree(srv.pid()), mustCPU(self), time.Now()
	var rssSum, filesSum, samples int64
	for time.Since(t0) < c.window {
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
		u := procstat.SampleTree(srv.pid())
		rssSum, filesSum, samples = rssSum+u.RSS, filesSum+srv.files(), samples+1
		if dead, err := srv.exited(); dead {
			t.why = append(t.why, fmt.Sprintf("server exited: %v", err))
			break
		}
	}
	u1, tool1 := procstat.SampleTree(srv.pid()), mustCPU(self)
	t.window = time.Since(t0)
	stopWatch()
	playlists := watch.Wait()
	run.Stop()
	res := run.Wait()

	t.cpu = (u1.CPU - u0.CPU).Seconds() / t.window.Seconds()
	t.toolCPU = (tool1 - tool0).Seconds() / t.window.Seconds()
	if samples > 0 {
		t.rss, t.files = rssSum/samples, filesSum/samples
	}
	t.sum, t.schedLag, t.sampled = res.Summary(), res.SchedulerLag, len(playlists)
	for _, p := range playlists {
		if p.Fresh() {
			t.fresh++
		}
	}
	t.judge(playlists)
	shown := 0
	for _, p := range playlists {
		if !p.Fresh() && shown < 3 {
			shown++
			log.Printf("%s %d: %s: %d polls, %d errors, %d stalls (longest %v), last error %q",
				sys.name, n, p.URL, p.Polls, p.Errors, p.Stalls, p.MaxStill.Round(10*time.Millisecond), p.LastError)
		}
	}
	log.Printf("%s %d: %s; CPU %.0f %% (%.2f %%/stream), memory %.1f MiB/stream, load tool %.0f %%",
		sys.name, n, t.verdict(), 100*t.cpu, 100*t.cpu/float64(n), t.memPerStream()/(1<<20), 100*t.toolCPU)
	return t, nil
}

// judge decides whether the streams were held and says why not.
func (t *trial) judge(playlists []load.PlaylistReport) {
	s := t.sum
	if s.Confirmed < t.n {
		t.why = append(t.why, fmt.Sprintf("%d of %d publishes not confirmed (%d refused, %d failed)", t.n-s.Confirmed, t.n, s.Refused, s.Failed))
	}
	if s.Dropped > 0 {
		t.why = append(t.why, fmt.Sprintf("%d publishers dropped", s.Dropped))
	}
	if s.Late > 0 {
		t.why = append(t.why, fmt.Sprintf("%d publishers late (up to %v behind)", s.Late, s.MaxLate.Round(time.Millisecond)))
	}
	if t.fresh < t.sampled {
		stalls, errs := 0, 0
		for _, p := range playlists {
			if !p.Fresh() {
				if p.Errors > 0 || !p.Appeared {
					errs++
				} else {
					stalls++
				}
			}
		}
		t.why = append(t.why, fmt.Sprintf("%d of %d sampled playlists not fresh (%d stalled, %d failing)", t.sampled-t.fresh, t.sampled, stalls, errs))
	}
	t.held = len(t.why) == 0
}

func (t *trial) verdict() string {
	if t.held {
		return "held"
	}
	return "not held: " + strings.Join(t.why, "; ")
}

func mustCPU(pid int) time.Duration {
	d, _ := procstat.CPUTime(pid, false)
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
