package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onairhq/onair/internal/hooksig"
)

// Defaults for Options fields left zero.
const (
	DefaultQueueSize  = 10000
	DefaultTimeout    = 10 * time.Second
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 30 * time.Second
)

// maxAnswer bounds what is read of a receiver's answer (it is discarded).
const maxAnswer = 64 << 10

// Options configure a Notifier.
type Options struct {
	// URL receives the events (POST, JSON).
	URL string
	// Secret keys the requests' HMAC-SHA256 signatures; required.
	Secret string
	// QueueSize bounds the events waiting for delivery (default 10000); when
	// it is full the oldest waiting event is dropped and counted.
	QueueSize int
	// Timeout bounds one delivery attempt (default 10 s).
	Timeout time.Duration
	// BackoffMin is the wait after a failed attempt; it doubles with each
	// further failure of the same event up to BackoffMax (defaults 1 s and
	// 30 s). Each wait is jittered by ±20 %, within BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// Client makes the requests (default: a fresh http.Client). Redirects are never followed.
	Client *http.Client
	// Logger receives the Notifier's log (default slog.Default()).
	Logger *slog.Logger
}

// Notifier queues events and delivers them, in order, to one webhook.
type Notifier struct {
	opts   Options
	secret []byte
	client *http.Client
	log    *slog.Logger

	ctx    context.Context // ends delivery; cancelled by Close
	cancel context.CancelFunc
	wake   chan struct{} // a one-slot doorbell: an event was queued, or Close was called
	done   chan struct{} // closed when the delivery goroutine returns

	mu       sync.Mutex
	queue    []Event
	inflight bool              // the delivery goroutine holds an event taken off queue
	seq      map[string]uint64 // the last seq of each channel
	closed   bool
	stopOnce sync.Once

	delivered, failed, overflow, refused atomic.Uint64
	overflowLog                          sampledLog
}

// New validates opts and starts the delivery goroutine (Close stops it).
func New(opts Options) (*Notifier, error) {
	if opts.URL == "" {
		return nil, errors.New("events: no webhook URL")
	}
	if opts.Secret == "" {
		return nil, errors.New("events: a webhook needs a secret to sign its requests")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	opts.BackoffMax = max(opts.BackoffMax, opts.BackoffMin)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := http.Client{}
	if opts.Client != nil {
		c = *opts.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n := &Notifier{
		opts:   opts,
		secret: []byte(opts.Secret),
		client: &c,
		log:    opts.Logger.With("component", "events"),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		seq:    make(map[string]uint64),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	go n.run()
	return n, nil
}

// Send queues ev for delivery and returns at once, whatever the receiver
// does: it takes a lock held only to add or take one event, never across a
// request. It fills ev's ID, Seq and (if zero) Time. When the queue is full,
// the oldest queued event is dropped (counted, and logged at most every 10 s).
// After Close, events are dropped.
func (n *Notifier) Send(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	ev.ID = newID()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.seq[ev.Channel]++
	ev.Seq = n.seq[ev.Channel]
	var lost Event
	full := len(n.queue) >= n.opts.QueueSize
	if full {
		lost = n.queue[0]
		n.queue[0] = Event{}
		n.queue = n.queue[1:]
	}
	n.queue = append(n.queue, ev)
	n.mu.Unlock()
	if full {
		n.overflow.Add(1)
		if k := n.overflowLog.due(time.Now()); k >= 0 {
			n.log.Warn("events queue full: the oldest waiting events are dropped", "queue", n.opts.QueueSize,
				"dropped", n.overflow.Load(), "dropped_since_last_log", k+1, "oldest_type", lost.Type, "oldest_channel", lost.Channel)
		}
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Close stops taking events and gives the queued ones up to flush to be
// delivered; then it stops the delivery goroutine (an attempt under way is
// cut) and returns once it has. What was not delivered is logged and lost.
func (n *Notifier) Close(flush time.Duration) {
	n.stopOnce.Do(func() { n.stop(flush) })
}

func (n *Notifier) stop(flush time.Duration) {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(flush)
	defer t.Stop()
	select {
	case <-n.done:
	case <-t.C:
	}
	n.cancel()
	<-n.done
	if left := n.Queued(); left > 0 {
		n.log.Warn("events not delivered before shutdown are lost", "events", left)
	}
}

// Queued returns how many events wait for delivery, the one being delivered included.
func (n *Notifier) Queued() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := len(n.queue)
	if n.inflight {
		q++
	}
	return q
}

// next takes the oldest queued event, waiting for one. It returns false once
// the Notifier is closed and drained, or Close's flush time is over.
func (n *Notifier) next() (Event, bool) {
	for {
		n.mu.Lock()
		n.inflight = false
		if len(n.queue) > 0 {
			ev := n.queue[0]
			n.queue[0] = Event{} // let the queue's array drop what it held
			n.queue = n.queue[1:]
			n.inflight = true
			n.mu.Unlock()
			return ev, true
		}
		closed := n.closed
		n.mu.Unlock()
		if closed {
			return Event{}, false
		}
		select {
		case <-n.wake:
		case <-n.ctx.Done():
			return Event{}, false
		}
	}
}

// run delivers the queued events one at a time, in order.
func (n *Notifier) run() {
	defer close(n.done)
	for {
		ev, ok := n.next()
		if !ok {
			return
		}
		if !n.deliver(ev) {
			return // stopped: ev stays counted in Queued (inflight)
		}
	}
}

// deliver posts ev until the receiver takes or refuses it. It returns false
// if the Notifier stopped first.
func (n *Notifier) deliver(ev Event) bool {
	body, err := json.Marshal(ev)
	if err != nil { // plain data: cannot happen
		n.log.Error("event cannot be encoded: dropped", "type", ev.Type, "channel", ev.Channel, "err", err)
		return true
	}
	var firstFail time.Time
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := n.post(ev, body, attempt)
		switch {
		case err == nil && status/100 == 2:
			n.delivered.Add(1)
			if !firstFail.IsZero() {
				n.log.Info("events webhook reachable again", "failed_attempts", attempt-1, "after", time.Since(firstFail).Round(time.Millisecond))
			}
			return true
		case err == nil && status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			n.refused.Add(1)
			n.log.Warn("events webhook refused an event: dropped", "status", status, "type", ev.Type, "channel", ev.Channel, "id", ev.ID)
			return true
		}
		if n.ctx.Err() != nil {
			return false // Close cut the attempt
		}
		n.failed.Add(1)
		if err == nil {
			err = fmt.Errorf("answered %d", status)
		}
		delay := n.backoff(attempt, retryAfter)
		if firstFail.IsZero() {
			firstFail = time.Now()
			n.log.Warn("events webhook failed: retrying with backoff; later events wait", "err", err, "retry_in", delay.Round(time.Millisecond), "queued", n.Queued())
		} else {
			n.log.Debug("events webhook attempt failed", "attempt", attempt, "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// post makes one delivery attempt. It returns the answer's status and its
// Retry-After (seconds form; 0 when absent), or the request's error.
func (n *Notifier) post(ev Event, body []byte, attempt int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "onair-events/1")
	req.Header.Set("X-Onair-Event", string(ev.Type))
	req.Header.Set("X-Onair-Event-Id", ev.ID)
	req.Header.Set("X-Onair-Delivery-Attempt", strconv.Itoa(attempt))
	req.Header.Set(hooksig.Header, hooksig.Sign(n.secret, body))
	req.Header.Set(hooksig.TimedHeader, hooksig.SignTimed(n.secret, body, time.Now()))
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer)) // lets the connection be reused
	var retryAfter time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retryAfter, nil
}

// backoff is the wait after the attempt-th failed attempt at one event:
// BackoffMin doubled per earlier failure, jittered by ±20 %, at least a
// Retry-After the receiver asked for, and at most BackoffMax.
func (n *Notifier) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := n.opts.BackoffMin
	for i := 1; i < attempt && d < n.opts.BackoffMax; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(max(d, retryAfter), n.opts.BackoffMax)
}

// sampledLog lets a repeated log line through at most once per 10 s.
type sampledLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// due returns how many lines were suppressed since the last one let
// through, or -1 if this one is suppressed too.
func (s *sampledLog) due(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() && now.Sub(s.last) < 10*time.Second {
		s.suppressed++
		return -1
	}
	k := s.suppressed
	s.last, s.suppressed = now, 0
	return k
}
