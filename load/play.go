package load

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for PlayOptions fields left zero.
const (
	DefaultRequestTimeout = 15 * time.Second
	defaultRetry          = 500 * time.Millisecond
)

// PlayOptions configure simulated players of one HLS stream.
type PlayOptions struct {
	// URL is the multivariant (read once, its first variant followed) or
	// media playlist every player opens.
	URL     string
	Players int
	// Ramp spreads the players' starts evenly over this long.
	Ramp time.Duration
	// Settle leaves the ramp and this long after it out of the figures of
	// the result, so they describe the steady state; progress counts all.
	Settle time.Duration
	// StallAfter is how many target durations a player may go without a
	// new part or segment before that counts as a stall.
	StallAfter float64
	// NoDelta keeps the players from asking for delta updates
	// (_HLS_skip=YES), which by default they do when the playlist offers
	// them, as hls.js does.
	NoDelta bool
	// RequestTimeout bounds each request; keep it above the origin's hold
	// limit so that the origin's own answer is seen.
	RequestTimeout time.Duration
	Client         *http.Client
}

// Play is a run of simulated players.
type Play struct {
	opts        PlayOptions
	start       time.Time
	measureFrom time.Time
	cpu0        time.Duration
	players     []*player
	done        chan struct{}
	result      PlayResult

	// Running totals for Progress, window or not.
	playlistReqs, mediaReqs, bytes, errs, stalls atomic.Int64
}

// Player states.
const (
	playerWaiting int32 = iota // not started yet
	playerOpening              // before its first media playlist
	playerPlaying
	playerEnded // the playlist ended (EXT-X-ENDLIST)
)

// StartPlay starts the players (over the ramp) and returns at once; they
// play until ctx ends. Call Wait for the result.
func StartPlay(ctx context.Context, opts PlayOptions) (*Play, error) {
	if opts.URL == "" {
		return nil, errors.New("no playlist URL")
	}
	if opts.Players < 1 {
		return nil, errors.New("no players")
	}
	if opts.StallAfter <= 0 {
		opts.StallAfter = DefaultStallAfter
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	ownClient := opts.Client == nil
	if ownClient {
		opts.Client = &http.Client{Transport: playerTransport(opts.Players)}
	}
	p := &Play{opts: opts, done: make(chan struct{}), start: time.Now(), cpu0: cpuTime()}
	p.measureFrom = p.start.Add(opts.Ramp + opts.Settle)
	for i := range opts.Players {
		p.players = append(p.players, newPlayer(p, i))
	}
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		p.ramp(ctx, &wg)
		<-ctx.Done()
		wg.Wait()
		p.result = p.collect(time.Now())
		if ownClient {
			opts.Client.CloseIdleConnections()
		}
	}()
	return p, nil
}

// playerTransport keeps one idle connection per player, as a browser
// keeps its connection to an origin, and leaves playlists' gzip to the
// players, which count the bytes as sent.
func playerTransport(players int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: players + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// ramp starts player i at start + i × Ramp / Players, each in a goroutine
// of its own that wg tracks.
func (p *Play) ramp(ctx context.Context, wg *sync.WaitGroup) {
	rampStarts(ctx, p.start, p.opts.Ramp, len(p.players), func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.players[i].play(ctx)
		}()
	})
}

// Wait returns the result once the run's context has ended and every
// player has stopped.
func (p *Play) Wait() PlayResult {
	<-p.done
	return p.result
}

// Done is closed when every player has stopped.
func (p *Play) Done() <-chan struct{} { return p.done }

// PlayProgress is a snapshot of a run, from its start.
type PlayProgress struct {
	Elapsed                         time.Duration
	Started, Playing, Ended         int
	PlaylistRequests, MediaRequests int64
	Bytes, Errors, Stalls           int64
	StalledNow                      int           // playing, with no new part or segment for longer than the stall limit
	CPU                             time.Duration // this process's, since the start
}

// Progress counts requests so far and the players by state.
func (p *Play) Progress() PlayProgress {
	now := time.Now()
	pr := PlayProgress{
		Elapsed: now.Sub(p.start), CPU: cpuTime() - p.cpu0,
		PlaylistRequests: p.playlistReqs.Load(), MediaRequests: p.mediaReqs.Load(),
		Bytes: p.bytes.Load(), Errors: p.errs.Load(), Stalls: p.stalls.Load(),
	}
	for _, pl := range p.players {
		switch pl.state.Load() {
		case playerWaiting:
			continue
		case playerPlaying:
			pr.Playing++
			if limit := pl.limit.Load(); limit > 0 && now.UnixNano()-pl.lastAdvance.Load() > limit {
				pr.StalledNow++
			}
		case playerEnded:
			pr.Ended++
		}
		pr.Started++
	}
	return pr
}
