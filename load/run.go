package load

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// Stream is one publisher's RTMP stream name and the channel it shows up
// as on the server (the same for servers that play what they are sent).
type Stream struct {
	Name    string
	Channel string
}

// Defaults for PublishOptions fields left zero.
const (
	DefaultConfirmTimeout = 10 * time.Second
	DefaultLateAfter      = time.Second
	DefaultTick           = 10 * time.Millisecond
	DefaultChunkSize      = 4096 // what OBS and ffmpeg use
)

// PublishOptions configure a publishing run.
type PublishOptions struct {
	Target  Target
	Media   *Media
	Streams []Stream // one publisher each
	// Ramp spreads the publishers' starts evenly over this long (0: all at once).
	Ramp time.Duration
	// Duration ends the run this long after it started (0: when ctx ends).
	Duration time.Duration
	// ConfirmTimeout bounds connect to NetStream.Publish.Start.
	ConfirmTimeout time.Duration
	// LateAfter is how far behind its real-time schedule a publisher may
	// fall before it counts as late.
	LateAfter time.Duration
	// Tick is the scheduler's period; Shards the number of scheduler
	// goroutines (default GOMAXPROCS).
	Tick   time.Duration
	Shards int
}

// Run is a publishing run in progress.
type Run struct {
	opts   PublishOptions
	target Target
	media  *Media
	pubs   []*publisher
	shards []*shard

	start    time.Time
	cpu0     time.Duration
	cancel   context.CancelFunc
	done     chan struct{} // closed when the run has stopped
	readers  sync.WaitGroup
	result   Result
	stopOnce sync.Once
}

// StartPublish starts the publishers (over the ramp) and returns at once.
// Call Wait for the result; cancelling ctx ends the run early.
func StartPublish(ctx context.Context, opts PublishOptions) (*Run, error) {
	if opts.Media == nil || len(opts.Media.loop) == 0 {
		return nil, errors.New("no media to publish")
	}
	if len(opts.Streams) == 0 {
		return nil, errors.New("no publishers")
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = DefaultConfirmTimeout
	}
	if opts.LateAfter <= 0 {
		opts.LateAfter = DefaultLateAfter
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.Shards <= 0 {
		opts.Shards = runtime.GOMAXPROCS(0)
	}
	r := &Run{opts: opts, target: opts.Target, media: opts.Media, done: make(chan struct{})}
	for i, s := range opts.Streams {
		r.pubs = append(r.pubs, &publisher{index: i, name: s.Name, channel: s.Channel, media: opts.Media})
	}
	for range min(opts.Shards, len(r.pubs)) {
		r.shards = append(r.shards, &shard{tick: opts.Tick, lateAfter: opts.LateAfter})
	}
	r.start, r.cpu0 = time.Now(), cpuTime()
	var rctx context.Context
	if opts.Duration > 0 {
		rctx, r.cancel = context.WithDeadline(ctx, r.start.Add(opts.Duration))
	} else {
		rctx, r.cancel = context.WithCancel(ctx)
	}
	go r.supervise(rctx)
	return r, nil
}

// supervise owns every goroutine of the run: the shards, the ramp and the
// publishers' readers. It stops them all when ctx ends.
func (r *Run) supervise(ctx context.Context) {
	defer close(r.done)
	var shardWG sync.WaitGroup
	live := make([][]*publisher, len(r.shards))
	for i, sh := range r.shards {
		shardWG.Add(1)
		go func() {
			defer shardWG.Done()
			live[i] = sh.run(ctx)
		}()
	}
	r.ramp(ctx)
	<-ctx.Done()
	shardWG.Wait()
	end := time.Now()
	for _, ps := range live {
		for _, p := range ps {
			p.stop()
		}
	}
	r.readers.Wait()
	r.result = r.collect(end)
}

// ramp starts publisher i at start + i × Ramp / N.
func (r *Run) ramp(ctx context.Context) {
	rampStarts(ctx, r.start, r.opts.Ramp, len(r.pubs), func(i int) {
		p, sh := r.pubs[i], r.shards[i%len(r.shards)]
		r.readers.Add(1)
		go func() {
			defer r.readers.Done()
			p.run(ctx, r, sh)
		}()
	})
}

// rampStarts calls start(i) for i in [0, n) at begin + i × ramp / n, until
// ctx ends.
func rampStarts(ctx context.Context, begin time.Time, ramp time.Duration, n int, start func(i int)) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for i := range n {
		at := begin.Add(time.Duration(int64(ramp) * int64(i) / int64(n)))
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		start(i)
	}
}

// Stop ends the run early; Wait still returns its result.
func (r *Run) Stop() { r.cancel() }

// Wait blocks until the run has ended and every connection is closed.
func (r *Run) Wait() Result {
	<-r.done
	return r.result
}

// Done is closed when the run has ended.
func (r *Run) Done() <-chan struct{} { return r.done }

// Progress is a snapshot of a run.
type Progress struct {
	Elapsed                                                   time.Duration
	Started, Connecting, Live, Refused, Failed, Dropped, Late int
	Sent                                                      int64
	CPU                                                       time.Duration // this process since the run started
}

// Progress counts the publishers by state.
func (r *Run) Progress() Progress {
	pr := Progress{Elapsed: time.Since(r.start), CPU: cpuTime() - r.cpu0}
	for _, p := range r.pubs {
		st := p.state.Load()
		if st != stateWaiting {
			pr.Started++
		}
		switch st {
		case stateConnecting:
			pr.Connecting++
		case stateLive, stateDone:
			pr.Live++
		case stateRefused:
			pr.Refused++
		case stateFailed:
			pr.Failed++
		case stateDropped:
			pr.Dropped++
		}
		if time.Duration(p.maxLate.Load()) > r.opts.LateAfter {
			pr.Late++
		}
		pr.Sent += p.sent.Load()
	}
	return pr
}

func (r *Run) collect(end time.Time) Result {
	res := Result{
		Elapsed:   end.Sub(r.start),
		CPU:       cpuTime() - r.cpu0,
		Bitrate:   r.media.Bitrate(),
		LateAfter: r.opts.LateAfter,
	}
	for _, sh := range r.shards {
		res.SchedulerLag = max(res.SchedulerLag, time.Duration(sh.maxLag.Load()))
	}
	for _, p := range r.pubs {
		p.mu.Lock()
		pr := PublisherReport{
			Index:        p.index,
			Channel:      p.channel,
			State:        stateNames[p.state.Load()],
			Confirm:      time.Duration(p.confirm.Load()),
			Sent:         p.sent.Load(),
			MaxLate:      time.Duration(p.maxLate.Load()),
			LateMessages: p.lateMsgs.Load(),
			Error:        p.errText,
		}
		if p.status.Code != "" {
			st := p.status
			pr.Status = &st
		}
		if !p.t0.IsZero() {
			until := end
			if !p.endedAt.IsZero() && p.endedAt.Before(end) {
				until = p.endedAt
			}
			pr.Published = until.Sub(p.t0)
		}
		p.mu.Unlock()
		res.Publishers = append(res.Publishers, pr)
	}
	return res
}

var stateNames = map[int32]string{
	stateWaiting:    "not started",
	stateConnecting: "connecting",
	stateLive:       "live",
	stateRefused:    "refused",
	stateFailed:     "failed",
	stateDropped:    "dropped",
	stateDone:       "done",
}
