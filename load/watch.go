package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults for WatchOptions fields left zero.
const (
	DefaultWatchInterval = time.Second
	DefaultStallAfter    = 3.0 // target durations
	defaultTarget        = 2 * time.Second
)

// WatchOptions configure a playlist watch.
type WatchOptions struct {
	// URLs are the playlists to poll. A multivariant one is read once, as
	// a player does, and its first variant's media playlist polled; it is
	// read again after the media playlist failed.
	URLs []string
	// Interval between polls of one playlist.
	Interval time.Duration
	// StallAfter is how many target durations the newest segment or part
	// may stand still before that counts as a stall.
	StallAfter float64
	Client     *http.Client
}

// PlaylistReport is what the watcher saw of one playlist.
type PlaylistReport struct {
	URL   string `json:"url"`
	Media string `json:"media,omitempty"` // the media playlist it followed last
	Polls int    `json:"polls"`
	// Errors counts failed polls (HTTP errors, bad playlists) once the
	// playlist had answered; StartErrors those before its first answer.
	Errors      int    `json:"errors"`
	StartErrors int    `json:"start_errors"`
	LastError   string `json:"last_error,omitempty"`
	// Appeared says the playlist answered at least once.
	Appeared bool          `json:"appeared"`
	Target   time.Duration `json:"target_ns"`
	Advances int           `json:"advances"`
	// Stalls counts the times the newest segment or part stood still
	// longer than StallAfter × Target; MaxStill is the longest such time.
	Stalls   int           `json:"stalls"`
	MaxStill time.Duration `json:"max_still_ns"`
	Ended    bool          `json:"ended"`
}

// Fresh says the playlist appeared, kept advancing and never failed.
func (r PlaylistReport) Fresh() bool {
	return r.Appeared && r.Errors == 0 && r.Stalls == 0 && !r.Ended
}

// Watch polls playlists until its context ends.
type Watch struct {
	opts    WatchOptions
	mu      sync.Mutex
	reports []PlaylistReport
	last    []time.Time // last advance (or first answer) per playlist
	seen    []time.Time // latest poll that still saw the position of last
	done    chan struct{}
}

// StartWatch starts one poller per playlist, staggered over an interval.
func StartWatch(ctx context.Context, opts WatchOptions) *Watch {
	if opts.Interval <= 0 {
		opts.Interval = DefaultWatchInterval
	}
	if opts.StallAfter <= 0 {
		opts.StallAfter = DefaultStallAfter
	}
	ownClient := opts.Client == nil
	if ownClient {
		opts.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	w := &Watch{opts: opts, reports: make([]PlaylistReport, len(opts.URLs)),
		last: make([]time.Time, len(opts.URLs)), seen: make([]time.Time, len(opts.URLs)), done: make(chan struct{})}
	var wg sync.WaitGroup
	for i, u := range opts.URLs {
		w.reports[i].URL = u
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.poll(ctx, i, time.Duration(int64(opts.Interval)*int64(i)/int64(len(opts.URLs))))
		}()
	}
	go func() {
		wg.Wait()
		w.finish()
		if ownClient {
			opts.Client.CloseIdleConnections()
		}
		close(w.done)
	}()
	return w
}

// Wait returns the reports once the watch's context has ended.
func (w *Watch) Wait() []PlaylistReport {
	<-w.done
	return w.reports
}

// Stalled counts the playlists standing still right now, or not answering.
func (w *Watch) Stalled() (stalled, failing int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for i, r := range w.reports {
		if !w.last[i].IsZero() && now.Sub(w.last[i]) > w.limit(r) {
			stalled++
		}
		if r.LastError != "" {
			failing++
		}
	}
	return stalled, failing
}

func (w *Watch) limit(r PlaylistReport) time.Duration {
	t := r.Target
	if t <= 0 {
		t = defaultTarget
	}
	return time.Duration(w.opts.StallAfter * float64(t))
}

func (w *Watch) poll(ctx context.Context, i int, offset time.Duration) {
	t := time.NewTimer(offset)
	defer t.Stop()
	var pos newest
	var media string // the media playlist polled; "" until read from the entry
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(w.opts.Interval)
		var pl playlist
		var err error
		if media == "" {
			media, pl, err = resolveMedia(ctx, w.opts.Client, w.reports[i].URL)
		} else if pl, err = getPlaylist(ctx, w.opts.Client, media); err != nil {
			media = "" // names may have changed: ask the entry again
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		w.mu.Lock()
		r := &w.reports[i]
		r.Polls++
		if err != nil {
			if r.Appeared {
				r.Errors++
			} else {
				r.StartErrors++
			}
			r.LastError = err.Error()
			w.mu.Unlock()
			continue
		}
		r.LastError, r.Media, r.Ended = "", media, pl.ended
		if pl.target > 0 {
			r.Target = pl.target
		}
		switch n := pl.newest(); {
		case !r.Appeared:
			r.Appeared, pos, w.last[i], w.seen[i] = true, n, now, now
		case n != pos:
			w.still(r, w.seen[i].Sub(w.last[i]))
			r.Advances++
			pos, w.last[i], w.seen[i] = n, now, now
		default:
			w.seen[i] = now
		}
		w.mu.Unlock()
	}
}

// still records one interval without an advance: from the poll that first
// saw a position to the last poll that still saw it, so the poll interval
// never makes a stall look longer than it surely was.
func (w *Watch) still(r *PlaylistReport, d time.Duration) {
	r.MaxStill = max(r.MaxStill, d)
	if d > w.limit(*r) {
		r.Stalls++
	}
}

// finish closes the intervals still open when the watch ends.
func (w *Watch) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.reports {
		if !w.last[i].IsZero() {
			w.still(&w.reports[i], w.seen[i].Sub(w.last[i]))
		}
	}
}

// resolveMedia gets the playlist at u and, if it is multivariant, the
// media playlist of its first variant. It returns the media playlist's
// URL, "" on failure.
func resolveMedia(ctx context.Context, c *http.Client, u string) (string, playlist, error) {
	pl, err := getPlaylist(ctx, c, u)
	if err != nil {
		return "", pl, err
	}
	if pl.variant == "" {
		return u, pl, nil
	}
	ref, err := url.Parse(pl.variant)
	if err != nil {
		return "", pl, fmt.Errorf("variant URI %q: %w", pl.variant, err)
	}
	media := pl.base.ResolveReference(ref).String()
	pl, err = getPlaylist(ctx, c, media)
	if err == nil && pl.variant != "" {
		err = errors.New("variant playlist is multivariant too")
	}
	if err != nil {
		return "", pl, err
	}
	return media, pl, nil
}

// getPlaylist gets and parses the playlist at u.
func getPlaylist(ctx context.Context, c *http.Client, u string) (playlist, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return playlist{}, err
	}
	res, err := c.Do(req)
	if err != nil {
		return playlist{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return playlist{}, fmt.Errorf("reading %s: %w", u, err)
	}
	if res.StatusCode != http.StatusOK {
		return playlist{}, fmt.Errorf("%s: HTTP %d", u, res.StatusCode)
	}
	pl, err := parsePlaylist(b, nil)
	if err != nil {
		return playlist{}, fmt.Errorf("%s: %w", u, err)
	}
	pl.base = res.Request.URL // after redirects: relative URIs resolve against it
	return pl, nil
}
