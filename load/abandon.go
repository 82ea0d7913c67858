package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for AbandonOptions fields left zero.
const (
	DefaultAbandonConcurrency = 1000
	DefaultCancelMin          = 10 * time.Millisecond
	DefaultCancelMax          = 200 * time.Millisecond
	DefaultSettleLimit        = time.Minute
	DefaultGoroutineSlack     = 5
	DefaultHeapSlack          = 2 << 20
)

// AbandonOptions configure a burst of abandoned blocking reloads: the
// requests of players that give up (a tab closed, a seek, a timeout)
// while the server holds them for a part that is not coming soon.
type AbandonOptions struct {
	// URL is the multivariant or media playlist of an LL-HLS stream,
	// ideally stalled (its publisher gone within the reconnect grace
	// period), so that nothing answers the requests before they are
	// cancelled.
	URL string
	// Requests is how many to send; Concurrency how many are in flight at
	// once (the burst goes as fast as the client can).
	Requests, Concurrency int
	// Each request is cancelled a random time in [CancelMin, CancelMax]
	// after it was sent.
	CancelMin, CancelMax time.Duration
	// MetricsURL is the server's Prometheus text endpoint with
	// go_goroutines and go_memstats_heap_alloc_bytes.
	MetricsURL string
	// GCURL, if set, is requested before every metrics sample to make the
	// server collect garbage, so the heap figure is live memory (for
	// onair: http://DEBUG-ADDR/debug/pprof/heap?gc=1). Without it the heap
	// holds garbage until the server's next collection.
	GCURL string
	// SampleEvery is the metrics sampling period (default 100 ms).
	SampleEvery time.Duration
	// SettleLimit is how long after the burst to wait for the baseline.
	SettleLimit time.Duration
	// Back at baseline: goroutines at most GoroutineSlack above it and the
	// heap at most HeapSlack bytes above it.
	GoroutineSlack int
	HeapSlack      int64
	Client         *http.Client // for the burst; metrics use a client of their own
}

// ServerSample is one reading of the server's metrics.
type ServerSample struct {
	At         time.Duration `json:"at_ns"` // since the burst began (negative: before)
	Goroutines int           `json:"goroutines"`
	Heap       int64         `json:"heap_bytes"`
}

// AbandonResult is what a burst of abandoned requests did to the server.
type AbandonResult struct {
	// Asked is the blocking reload every request made.
	Asked string `json:"asked"`
	// Hold is the origin's hold limit as HLS-ORIGIN rules put it: three
	// target durations of the playlist.
	Hold     time.Duration `json:"hold_ns"`
	Requests int           `json:"requests"`
	// Written counts the requests whose headers were sent; Abandoned those
	// cancelled before any answer.
	Written   int `json:"written"`
	Abandoned int `json:"abandoned"`
	// Answered counts answers that came before the cancellation, by
	// status: such requests were not abandoned (the stream was not
	// stalled, or the server refused them).
	Answered map[int]int `json:"answered"`
	// Failed counts requests that failed otherwise (connection errors).
	Failed    int           `json:"failed"`
	LastError string        `json:"last_error,omitempty"`
	Burst     time.Duration `json:"burst_ns"`

	Before ServerSample `json:"before"` // the baseline: median of samples before the burst
	Peak   ServerSample `json:"peak"`   // highest goroutines and heap, each at its own time
	After  ServerSample `json:"after"`  // the last sample
	// Back says the server returned to its baseline, BackAfter how long
	// after the burst's end; GoroutinesBack and HeapBack say when each
	// figure first did (-1: not seen).
	Back           bool           `json:"back"`
	BackAfter      time.Duration  `json:"back_after_ns"`
	GoroutinesBack time.Duration  `json:"goroutines_back_ns"`
	HeapBack       time.Duration  `json:"heap_back_ns"`
	Samples        []ServerSample `json:"samples"`
}

// Abandon measures the baseline, sends the burst and follows the
// server's goroutines and heap until they are back or SettleLimit has
// passed.
func Abandon(ctx context.Context, o AbandonOptions) (AbandonResult, error) {
	var res AbandonResult
	o.setDefaults()
	if o.URL == "" || o.MetricsURL == "" {
		return res, errors.New("abandon: a playlist URL and a metrics URL are needed")
	}
	ownClient := o.Client == nil
	if ownClient {
		o.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, DisableCompression: true}}
	}
	media, pl, err := resolveMedia(ctx, o.Client, o.URL)
	if err != nil {
		return res, fmt.Errorf("abandon: reading the playlist: %w", err)
	}
	if !pl.canBlock || pl.partTarget == 0 {
		return res, fmt.Errorf("abandon: %s is not an LL-HLS playlist with blocking reloads", media)
	}
	// The segment after the one in progress: the furthest a server must
	// accept, and a part that will not come soon from a stalled stream.
	media, _, _ = strings.Cut(media, "?")
	res.Asked = media + "?_HLS_msn=" + strconv.FormatUint(pl.newest().next+1, 10) + "&_HLS_part=0"
	res.Hold = 3 * pl.target
	res.Requests = o.Requests
	res.Answered = map[int]int{}

	m := &serverMetrics{client: &http.Client{Timeout: 10 * time.Second}, url: o.MetricsURL, gcURL: o.GCURL}
	defer m.client.CloseIdleConnections()
	if res.Before, err = m.baseline(ctx); err != nil {
		return res, err
	}
	start := time.Now()
	goroutinesBack := func(s ServerSample) bool { return s.Goroutines <= res.Before.Goroutines+o.GoroutineSlack }
	heapBack := func(s ServerSample) bool { return s.Heap <= res.Before.Heap+o.HeapSlack }
	back := func(s ServerSample) bool { return goroutinesBack(s) && heapBack(s) }
	f := m.follow(ctx, start, o.SampleEvery, back, o.SettleLimit)
	o.burst(ctx, res.Asked, &res)
	end := time.Now()
	res.Burst = end.Sub(start)
	if ownClient {
		o.Client.CloseIdleConnections() // only the server's side of the burst stays to be seen
	}
	f.ended <- end
	<-f.done
	res.Samples, res.Back, res.BackAfter = f.samples, f.back, f.backAfter
	res.GoroutinesBack, res.HeapBack = -1, -1
	for _, s := range res.Samples {
		res.Peak.Goroutines = max(res.Peak.Goroutines, s.Goroutines)
		res.Peak.Heap = max(res.Peak.Heap, s.Heap)
		if after := s.At - res.Burst; after >= 0 {
			if res.GoroutinesBack < 0 && goroutinesBack(s) {
				res.GoroutinesBack = after
			}
			if res.HeapBack < 0 && heapBack(s) {
				res.HeapBack = after
			}
		}
	}
	if n := len(res.Samples); n > 0 {
		res.After = res.Samples[n-1]
	}
	return res, ctx.Err()
}

func (o *AbandonOptions) setDefaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultAbandonConcurrency
	}
	if o.CancelMin <= 0 {
		o.CancelMin = DefaultCancelMin
	}
	if o.CancelMax < o.CancelMin {
		o.CancelMax = max(DefaultCancelMax, o.CancelMin)
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 100 * time.Millisecond
	}
	if o.SettleLimit <= 0 {
		o.SettleLimit = DefaultSettleLimit
	}
	if o.GoroutineSlack <= 0 {
		o.GoroutineSlack = DefaultGoroutineSlack
	}
	if o.HeapSlack <= 0 {
		o.HeapSlack = DefaultHeapSlack
	}
}

// burst sends o.Requests requests for u from o.Concurrency workers, each
// cancelled after a random time, and counts how they ended.
func (o *AbandonOptions) burst(ctx context.Context, u string, res *AbandonResult) {
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(o.Concurrency, o.Requests) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(o.Requests) {
				abandoned, written, status, err := o.abandonOne(ctx, u)
				mu.Lock()
				switch {
				case status != 0:
					res.Answered[status]++
				case abandoned:
					res.Abandoned++
				case ctx.Err() == nil:
					res.Failed++
					res.LastError = err.Error()
				}
				if written {
					res.Written++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// abandonOne sends one request and cancels it a random time after its
// headers went out; it returns whether they did and, if the request was
// answered before, the status. A request not written within
// writeTimeout is given up.
func (o *AbandonOptions) abandonOne(ctx context.Context, u string) (abandoned, written bool, status int, err error) {
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var wrote, fired atomic.Bool
	d := o.CancelMin + rand.N(o.CancelMax-o.CancelMin+1)
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil && !wrote.Swap(true) {
				time.AfterFunc(d, func() { fired.Store(true); cancel() })
			}
		},
	})
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return false, false, 0, err
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return fired.Load(), wrote.Load(), 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return false, wrote.Load(), resp.StatusCode, nil
}

// writeTimeout bounds the time to connect and send one abandoned request.
const writeTimeout = 10 * time.Second

// serverMetrics reads a server's goroutines and heap.
type serverMetrics struct {
	client     *http.Client
	url, gcURL string
}

// baseline is the median of five samples 200 ms apart.
func (m *serverMetrics) baseline(ctx context.Context) (ServerSample, error) {
	var gs []int
	var hs []int64
	for i := range 5 {
		if i > 0 && !sleepCtx(ctx, 200*time.Millisecond) {
			return ServerSample{}, ctx.Err()
		}
		s, err := m.read(ctx)
		if err != nil {
			return ServerSample{}, err
		}
		gs, hs = append(gs, s.Goroutines), append(hs, s.Heap)
	}
	slices.Sort(gs)
	slices.Sort(hs)
	return ServerSample{Goroutines: gs[2], Heap: hs[2]}, nil
}

// follower samples a server's metrics through a burst and after it.
type follower struct {
	ended chan time.Time // the burst's end, sent once
	done  chan struct{}  // closed when sampling has stopped
	// Set before done is closed:
	samples   []ServerSample
	back      bool
	backAfter time.Duration
}

// follow samples every period from a goroutine of its own; once told the
// burst's end, it stops at the first sample after it for which back is
// true, or when limit has passed since the end, or when ctx ends.
func (m *serverMetrics) follow(ctx context.Context, start time.Time, every time.Duration, back func(ServerSample) bool, limit time.Duration) *follower {
	f := &follower{ended: make(chan time.Time, 1), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		var end time.Time
		for {
			s, err := m.read(ctx)
			now := time.Now()
			if err == nil {
				s.At = now.Sub(start)
				f.samples = append(f.samples, s)
			}
			if !end.IsZero() {
				if err == nil && back(s) {
					f.back, f.backAfter = true, now.Sub(end)
					return
				}
				if now.Sub(end) > limit {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case end = <-f.ended:
			case <-t.C:
			}
		}
	}()
	return f
}

// read takes one sample, collecting the server's garbage first if it can.
func (m *serverMetrics) read(ctx context.Context) (ServerSample, error) {
	var s ServerSample
	if m.gcURL != "" {
		if err := m.getLines(ctx, m.gcURL, nil); err != nil {
			return s, fmt.Errorf("forcing a collection: %w", err)
		}
	}
	found := 0
	err := m.getLines(ctx, m.url, func(line string) {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return
		}
		switch name {
		case "go_goroutines":
			s.Goroutines = int(f)
			found++
		case "go_memstats_heap_alloc_bytes":
			s.Heap = int64(f)
			found++
		}
	})
	if err == nil && found < 2 {
		err = fmt.Errorf("%s: no go_goroutines or go_memstats_heap_alloc_bytes", m.url)
	}
	return s, err
}

// getLines GETs u and hands each line of a 200 answer to line (if not nil).
func (m *serverMetrics) getLines(ctx context.Context, u string, line func(string)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	if line == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line(sc.Text())
	}
	return sc.Err()
}

// WriteText writes a human-readable summary.
func (r AbandonResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "abandoned blocking reloads of %s\n", r.Asked)
	answered := 0
	for _, n := range r.Answered {
		answered += n
	}
	fmt.Fprintf(w, "requests %d in %v: headers sent %d, cancelled unanswered %d, answered first %d %v, failed %d\n",
		r.Requests, r.Burst.Round(time.Millisecond), r.Written, r.Abandoned, answered, r.Answered, r.Failed)
	if r.LastError != "" {
		fmt.Fprintf(w, "  last failure: %s\n", r.LastError)
	}
	fmt.Fprintf(w, "server goroutines %d before, peak %d, %d after; heap %s before, peak %s, %s after\n",
		r.Before.Goroutines, r.Peak.Goroutines, r.After.Goroutines, mibs(r.Before.Heap), mibs(r.Peak.Heap), mibs(r.After.Heap))
	if r.Back {
		within := "within"
		if r.BackAfter > r.Hold {
			within = "beyond"
		}
		fmt.Fprintf(w, "back to baseline %v after the burst (%s the hold limit, %v): goroutines after %v, heap after %v\n",
			r.BackAfter.Round(time.Millisecond), within, r.Hold, r.GoroutinesBack.Round(time.Millisecond), r.HeapBack.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "NOT back to baseline %v after the burst (hold limit %v): goroutines %s, heap %s\n",
			(r.After.At - r.Burst).Round(time.Millisecond), r.Hold, backText(r.GoroutinesBack), backText(r.HeapBack))
	}
}

func backText(d time.Duration) string {
	if d < 0 {
		return "not back"
	}
	return "back after " + d.Round(time.Millisecond).String()
}

func mibs(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
