package events

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onairhq/onair/moderation"
)

const testSecret = "events-test-secret"

// receiver is a real HTTP webhook receiver that records what it accepted.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(ev Event, attempt int) int // status to answer; nil: 200

	mu       sync.Mutex
	got      []Event     // accepted (2xx), in arrival order
	arrived  []time.Time // when each accepted event arrived
	attempts map[string][]time.Time
	badSig   int
}

func newReceiver(t *testing.T, answer func(ev Event, attempt int) int) *receiver {
	r := &receiver{t: t, answer: answer, attempts: map[string][]time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	now := time.Now()
	var ev Event
	err := moderation.VerifyTimedSignature([]byte(testSecret), body, req.Header.Get(moderation.TimedSignatureHeader), now, 0)
	if err != nil || !moderation.VerifySignature([]byte(testSecret), body, req.Header.Get(moderation.SignatureHeader)) ||
		json.Unmarshal(body, &ev) != nil || req.Header.Get("X-Onair-Event-Id") != ev.ID ||
		req.Header.Get("Content-Type") != "application/json" {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	r.attempts[ev.ID] = append(r.attempts[ev.ID], now)
	attempt := len(r.attempts[ev.ID])
	r.mu.Unlock()
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(ev, attempt)
	}
	if status/100 == 2 {
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.arrived = append(r.arrived, now)
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (r *receiver) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...)
}

// waitFor waits until the receiver accepted n events.
func (r *receiver) waitFor(n int, timeout time.Duration) []Event {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.events()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver got %d events in %v, want %d", len(got), timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestNotifier(t *testing.T, url string, o Options) *Notifier {
	t.Helper()
	o.URL, o.Secret = url, testSecret
	if o.BackoffMin == 0 {
		o.BackoffMin, o.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	}
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(0) })
	return n
}

// checkOrder checks that got holds each channel's events with seq 1, 2, 3… in order.
func checkOrder(t *testing.T, got []Event) {
	t.Helper()
	last := map[string]uint64{}
	ids := map[string]bool{}
	for _, ev := range got {
		if ev.Seq != last[ev.Channel]+1 {
			t.Fatalf("channel %s: seq %d after %d", ev.Channel, ev.Seq, last[ev.Channel])
		}
		last[ev.Channel] = ev.Seq
		if ids[ev.ID] {
			t.Fatalf("event %s delivered twice", ev.ID)
		}
		ids[ev.ID] = true
	}
}

func sendN(n *Notifier, count int, channels ...string) {
	for i := range count {
		n.Send(Event{Type: PublishStarted, Channel: channels[i%len(channels)], BroadcastID: fmt.Sprint(i), Detail: fmt.Sprint(i)})
	}
}

// Events arrive signed (both headers verify with moderation's functions), in
// the order sent, with seq counting per channel.
func TestNotifierSignedInOrder(t *testing.T) {
	r := newReceiver(t, nil)
	n := newTestNotifier(t, r.srv.URL, Options{})
	const count = 300
	sent := make([]time.Time, count)
	for i := range count {
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // in bursts of ten, as a busy server's events come
		}
		sent[i] = time.Now()
		sendN(n, 1, []string{"a", "b", "c"}[i%3])
	}
	got := r.waitFor(count, 10*time.Second)
	checkOrder(t, got)
	for i, ev := range got {
		if ev.Seq != uint64(i/3+1) {
			t.Fatalf("event %d: seq %d, want %d", i, ev.Seq, i/3+1)
		}
		if ev.Time.Location() != time.UTC || ev.Time.IsZero() {
			t.Fatalf("event time %v", ev.Time)
		}
	}
	r.mu.Lock()
	lat := make([]time.Duration, count)
	for i := range count {
		lat[i] = r.arrived[i].Sub(sent[i])
	}
	bad := r.badSig
	r.mu.Unlock()
	if bad > 0 {
		t.Fatalf("%d requests failed signature checks", bad)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("Send -> receiver latency over %d events (bursts of ten every 5 ms): median %v, p99 %v", count, lat[count/2], lat[count*99/100])
	if s := n.Stats(); s.Delivered != count || s.FailedAttempts != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A receiver answering 500 for a while gets every event once it recovers, in
// order, each once; the waits between attempts grow.
func TestNotifierRetriesInOrderWithBackoff(t *testing.T) {
	var mu sync.Mutex
	down := true
	r := newReceiver(t, func(ev Event, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	n := newTestNotifier(t, r.srv.URL, Options{BackoffMin: 50 * time.Millisecond, BackoffMax: 800 * time.Millisecond})
	sendN(n, 1, "a")
	// While the first event is retried, more arrive behind it.
	for range 5 {
		time.Sleep(60 * time.Millisecond)
		sendN(n, 4, "a", "b")
	}
	time.Sleep(900 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	got := r.waitFor(21, 5*time.Second)
	checkOrder(t, got)
	for i, ev := range got[1:] {
		if ev.Detail != fmt.Sprint(i%4) {
			t.Fatalf("event %d out of order: %+v", i+1, ev)
		}
	}
	r.mu.Lock()
	at := r.attempts[got[0].ID]
	r.mu.Unlock()
	var gaps []time.Duration
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	t.Logf("attempts at the first event: %d, waits between them %v", len(at), gaps)
	if len(gaps) < 4 {
		t.Fatalf("only %d attempts", len(at))
	}
	// 50, 100, 200, 400 ms ±20 %, then 800: each at least 4/3 the one
	// before (1.15 with some room for a busy machine) until the cap.
	for i := 1; i < 4; i++ {
		if gaps[i] < gaps[i-1]*23/20 {
			t.Errorf("wait %d (%v) did not grow from %v", i, gaps[i], gaps[i-1])
		}
	}
	for _, g := range gaps {
		if g > 1000*time.Millisecond {
			t.Errorf("wait %v beyond the 800 ms cap", g)
		}
	}
	if s := n.Stats(); s.FailedAttempts != uint64(len(at)-1) || s.Delivered != 21 {
		t.Errorf("stats %+v, want %d failed attempts and 21 delivered", s, len(at)-1)
	}
}

// An event the receiver refuses (4xx) is dropped and counted; 408 and 429 are retried.
func TestNotifierRefusedDropped(t *testing.T) {
	r := newReceiver(t, func(ev Event, attempt int) int {
		switch ev.Detail {
		case "1":
			return http.StatusBadRequest
		case "2":
			if attempt == 1 {
				return http.StatusTooManyRequests
			}
		case "3":
			if attempt == 1 {
				return http.StatusRequestTimeout
			}
		}
		return http.StatusOK
	})
	n := newTestNotifier(t, r.srv.URL, Options{})
	sendN(n, 5, "a")
	got := r.waitFor(4, 5*time.Second)
	var details []string
	for _, ev := range got {
		details = append(details, ev.Detail)
	}
	if strings.Join(details, ",") != "0,2,3,4" {
		t.Errorf("delivered %v, want 0,2,3,4", details)
	}
	if s := n.Stats(); s.DroppedRefused != 1 || s.FailedAttempts != 2 {
		t.Errorf("stats %+v, want 1 refused, 2 failed attempts", s)
	}
}

// A full queue drops its oldest events, counts them, and keeps the newest.
func TestNotifierOverflowDropsOldest(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{}, 1)
	r := newReceiver(t, func(ev Event, attempt int) int {
		if ev.Detail == "0" {
			first <- struct{}{}
			<-release
		}
		return http.StatusOK
	})
	n := newTestNotifier(t, r.srv.URL, Options{QueueSize: 5})
	sendN(n, 1, "a")
	<-first // event 0 is in flight; 5 more fit in the queue
	for i := 1; i < 20; i++ {
		n.Send(Event{Type: PublishStarted, Channel: "a", Detail: fmt.Sprint(i)})
	}
	if s := n.Stats(); s.DroppedOverflow != 14 || s.Queued != 6 {
		t.Errorf("stats %+v, want 14 dropped by overflow, 6 queued", s)
	}
	close(release)
	got := r.waitFor(6, 5*time.Second)
	var details []string
	for _, ev := range got {
		details = append(details, ev.Detail)
	}
	if strings.Join(details, ",") != "0,15,16,17,18,19" {
		t.Errorf("delivered %v, want 0 then the newest five", details)
	}
	// The receiver sees the gap in seq.
	if got[1].Seq != 16 {
		t.Errorf("seq after the gap %d, want 16", got[1].Seq)
	}
}

// Send costs the same whether the receiver answers or hangs.
func TestNotifierSendNeverBlocks(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	r := newReceiver(t, func(Event, int) int { <-hang; return 200 })
	n := newTestNotifier(t, r.srv.URL, Options{QueueSize: 1000})
	const count = 20000 // twenty times the queue: overflow on the way
	var worst, total time.Duration
	for i := range count {
		t0 := time.Now()
		n.Send(Event{Type: ModerationFlag, Channel: "a", Detail: fmt.Sprint(i)})
		d := time.Since(t0)
		total += d
		worst = max(worst, d)
	}
	t.Logf("Send with a receiver that never answers: mean %v, worst %v over %d events", total/count, worst, count)
	if worst > 50*time.Millisecond {
		t.Errorf("a Send took %v", worst)
	}
	if s := n.Stats(); s.DroppedOverflow != count-1000-1 {
		t.Errorf("dropped %d by overflow, want %d", s.DroppedOverflow, count-1001)
	}
}

// Close flushes what is queued while the receiver answers, and stops the
// delivery goroutine within its flush time when it does not.
func TestNotifierClose(t *testing.T) {
	r := newReceiver(t, nil)
	n := newTestNotifier(t, r.srv.URL, Options{})
	sendN(n, 50, "a")
	n.Close(5 * time.Second)
	if got := len(r.events()); got != 50 {
		t.Errorf("Close flushed %d of 50 events", got)
	}
	n.Send(Event{Type: PublishStarted, Channel: "a"}) // after Close: dropped, no panic
	select {
	case <-n.done:
	default:
		t.Error("delivery goroutine still running after Close")
	}

	hang := make(chan struct{})
	defer close(hang)
	h := newReceiver(t, func(Event, int) int { <-hang; return 200 })
	n2 := newTestNotifier(t, h.srv.URL, Options{})
	sendN(n2, 3, "a")
	t0 := time.Now()
	n2.Close(200 * time.Millisecond)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Close took %v with a hanging receiver and 200 ms to flush", d)
	}
	select {
	case <-n2.done:
	default:
		t.Error("delivery goroutine still running after Close")
	}
	if q := n2.Queued(); q != 3 {
		t.Errorf("%d left queued, want 3", q)
	}
}

// The Notifier is a prometheus.Collector of its counts.
func TestNotifierCollector(t *testing.T) {
	r := newReceiver(t, func(ev Event, _ int) int {
		if ev.Detail == "1" {
			return http.StatusForbidden
		}
		return http.StatusOK
	})
	n := newTestNotifier(t, r.srv.URL, Options{})
	sendN(n, 3, "a")
	r.waitFor(2, 5*time.Second)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n)
	want := `
# HELP onair_events_delivered_total Events the events webhook accepted (2xx).
# TYPE onair_events_delivered_total counter
onair_events_delivered_total 2
# HELP onair_events_dropped_total Events never delivered: overflow (the queue was full and they were the oldest) or refused (the webhook answered 4xx).
# TYPE onair_events_dropped_total counter
onair_events_dropped_total{reason="overflow"} 0
onair_events_dropped_total{reason="refused"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "onair_events_delivered_total", "onair_events_dropped_total"); err != nil {
		t.Error(err)
	}
	if c := testutil.CollectAndCount(n); c != 5 {
		t.Errorf("%d metrics collected, want 5", c)
	}
}
