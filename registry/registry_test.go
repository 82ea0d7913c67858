package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/ingest"
)

// testDB is the Redis database these tests own: each test flushes it first.
const (
	testAddr = "127.0.0.1:6379"
	testDB   = 12
)

// testClient returns a client of the real Redis on testDB, emptied, or skips
// the test when Redis does not answer (CI runs one).
func testClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testAddr, DB: testDB, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := rdb.Ping(ctx).Err()
	cancel()
	if err != nil {
		t.Skipf("redis on %s does not answer: %v", testAddr, err)
	}
	lockDB(t)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush db %d: %v", testDB, err)
	}
	return rdb
}

// dbLock is held by the test process that uses testDB, for as long as it
// runs: another run of these tests on the machine (two go test commands at
// once) waits for it rather than flushing the database under it.
var (
	dbLockOnce sync.Once
	dbLock     *os.File
)

func lockDB(t *testing.T) {
	dbLockOnce.Do(func() {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("onair-registry-test-redis-db%d.lock", testDB)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Logf("no lock on db %d, a concurrent run may interfere: %v", testDB, err)
			return
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			t.Logf("waiting for another run of these tests to finish with db %d", testDB)
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
				t.Logf("no lock on db %d, a concurrent run may interfere: %v", testDB, err)
			}
		}
		dbLock = f // kept open (and referenced) until the process exits
	})
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newNode returns node's Registry on rdb; opts' Node, Addr and Logger are filled in.
func newNode(rdb redis.UniversalClient, node string, opts Options) *Registry {
	opts.Node = node
	opts.Addr = "http://" + node + ":8080"
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	return New(rdb, opts)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// held is a Held that returns what was last set, safe to change while Run beats.
type held struct {
	mu   sync.Mutex
	recs []Record
}

func (h *held) set(recs ...Record) {
	h.mu.Lock()
	h.recs = recs
	h.mu.Unlock()
}

func (h *held) get() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

// lost records the channels Options.Lost was told of.
type lost struct {
	mu  sync.Mutex
	got []Record // holder, with Channel set to the lost channel
	ch  chan struct{}
}

func newLost() *lost { return &lost{ch: make(chan struct{}, 100)} }

func (l *lost) fn(channel string, holder Record) {
	l.mu.Lock()
	holder.Channel = channel
	l.got = append(l.got, holder)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *lost) all() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// waitFor polls cond every 20 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookup(t *testing.T, r *Registry, channel string) (Record, bool) {
	t.Helper()
	rec, ok, err := r.Lookup(ctxT(t), channel)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", channel, err)
	}
	return rec, ok
}

func TestClaim(t *testing.T) {
	const ch = "chan1"
	cases := []struct {
		name string
		// setup runs with node A's registry and its Held before B claims.
		setup       func(t *testing.T, a *Registry, h *held)
		claimer     string // the node claiming second ("node-a": A itself)
		takeover    bool
		wantClaimed bool   // B's claim fails with ErrClaimed
		wantHolder  string // the record's node after the claim
	}{
		{
			name:        "another node publishing refuses",
			setup:       func(t *testing.T, a *Registry, _ *held) { mustClaim(t, a, ch, false) },
			claimer:     "node-b",
			wantClaimed: true,
			wantHolder:  "node-a",
		},
		{
			name:       "takeover takes it from a publishing node",
			setup:      func(t *testing.T, a *Registry, _ *held) { mustClaim(t, a, ch, false) },
			claimer:    "node-b",
			takeover:   true,
			wantHolder: "node-b",
		},
		{
			name: "another node whose publisher left lets it go",
			setup: func(t *testing.T, a *Registry, h *held) {
				mustClaim(t, a, ch, false)
				h.set(Record{Channel: ch, Publishing: false})
				a.beat(ctxT(t))
			},
			claimer:    "node-b",
			wantHolder: "node-b",
		},
		{
			name: "another node publishing again after a beat refuses",
			setup: func(t *testing.T, a *Registry, h *held) {
				mustClaim(t, a, ch, false)
				h.set(Record{Channel: ch, Publishing: true})
				a.beat(ctxT(t))
			},
			claimer:     "node-b",
			wantClaimed: true,
			wantHolder:  "node-a",
		},
		{
			name:       "a node re-claims its own channel",
			setup:      func(t *testing.T, a *Registry, _ *held) { mustClaim(t, a, ch, false) },
			claimer:    "node-a",
			wantHolder: "node-a",
		},
		{
			name:       "nobody holds it",
			setup:      func(*testing.T, *Registry, *held) {},
			claimer:    "node-b",
			wantHolder: "node-b",
		},
		{
			name: "a released channel is free",
			setup: func(t *testing.T, a *Registry, _ *held) {
				mustClaim(t, a, ch, false)
				if err := a.Release(ctxT(t), ch, false); err != nil {
					t.Fatal(err)
				}
			},
			claimer:    "node-b",
			wantHolder: "node-b",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb := testClient(t)
			h := &held{}
			a := newNode(rdb, "node-a", Options{Held: h.get})
			tc.setup(t, a, h)

			b := newNode(rdb, tc.claimer, Options{})
			err := b.Claim(ctxT(t), ch, tc.takeover)
			if tc.wantClaimed {
				if !errors.Is(err, ingest.ErrClaimed) {
					t.Fatalf("Claim by %s = %v, want an error wrapping ingest.ErrClaimed", tc.claimer, err)
				}
				if !strings.Contains(err.Error(), "node-a") {
					t.Errorf("Claim error %q does not name the holder node-a", err)
				}
			} else if err != nil {
				t.Fatalf("Claim by %s: %v", tc.claimer, err)
			}
			rec, ok := lookup(t, b, ch)
			if !ok || rec.Node != tc.wantHolder {
				t.Fatalf("after the claim Lookup = %+v, %v; want held by %s", rec, ok, tc.wantHolder)
			}
			if rec.Addr != "http://"+tc.wantHolder+":8080" {
				t.Errorf("holder's Addr = %q", rec.Addr)
			}
		})
	}
}

func mustClaim(t *testing.T, r *Registry, channel string, takeover bool) {
	t.Helper()
	if err := r.Claim(ctxT(t), channel, takeover); err != nil {
		t.Fatalf("%s: Claim(%s): %v", r.Node(), channel, err)
	}
}

// A node whose channel was taken over learns it at its next beat, and that
// beat does not take the channel back.
func TestBeatReportsLostAfterTakeover(t *testing.T) {
	rdb := testClient(t)
	const ch = "moved"
	lostA := newLost()
	h := &held{}
	h.set(Record{Channel: ch, Publishing: true}, Record{Channel: "stays", Publishing: true})
	a := newNode(rdb, "node-a", Options{Held: h.get, Lost: lostA.fn})
	b := newNode(rdb, "node-b", Options{})
	mustClaim(t, a, ch, false)
	mustClaim(t, a, "stays", false)

	a.beat(ctxT(t))
	if got := lostA.all(); len(got) != 0 {
		t.Fatalf("a beat while A holds its channels reported lost: %+v", got)
	}

	mustClaim(t, b, ch, true)
	a.beat(ctxT(t))
	got := lostA.all()
	if len(got) != 1 || got[0].Channel != ch || got[0].Node != "node-b" || got[0].Addr != "http://node-b:8080" {
		t.Fatalf("Lost calls after B's takeover = %+v, want one for %s held by node-b", got, ch)
	}
	if rec, _ := lookup(t, a, ch); rec.Node != "node-b" {
		t.Errorf("A's beat overwrote B's claim: holder %s", rec.Node)
	}
	if rec, _ := lookup(t, a, "stays"); rec.Node != "node-a" {
		t.Errorf("A's other channel: holder %q", rec.Node)
	}
}

// Run beats every TTL/5: a takeover reaches Lost without calling beat.
func TestRunReportsLost(t *testing.T) {
	rdb := testClient(t)
	const ch = "run"
	lostA := newLost()
	h := &held{}
	h.set(Record{Channel: ch, Publishing: true})
	a := newNode(rdb, "node-a", Options{TTL: 500 * time.Millisecond, Held: h.get, Lost: lostA.fn})
	b := newNode(rdb, "node-b", Options{})
	mustClaim(t, a, ch, false)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}()

	// Run keeps the claim alive past its TTL.
	time.Sleep(1200 * time.Millisecond)
	if rec, ok := lookup(t, b, ch); !ok || rec.Node != "node-a" {
		t.Fatalf("after 2 TTLs of Run the claim is %+v, %v; want node-a's", rec, ok)
	}
	mustClaim(t, b, ch, true)
	select {
	case <-lostA.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not report the channel lost")
	}
	if got := lostA.all(); got[0].Node != "node-b" || got[0].Channel != ch {
		t.Errorf("Lost(%s, holder %s), want (%s, node-b)", got[0].Channel, got[0].Node, ch)
	}
}

func TestRelease(t *testing.T) {
	ch := fmt.Sprintf("rel-%d", time.Now().UnixNano()) // takedowns are seen by every database
	cases := []struct {
		name      string
		releaser  string
		takenDown bool
		// wantLive: node-a's claim stays; otherwise Lookup points at node-a's
		// ended playlist (wantEnded false) or says ErrEnded (taken down).
		wantLive, wantEnded bool
	}{
		{"by another node does nothing", "node-b", false, true, false},
		{"a takedown by another node does nothing", "node-b", true, true, false},
		{"by the holder ends it", "node-a", false, false, false},
		{"a takedown by the holder", "node-a", true, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb := testClient(t)
			ctx := ctxT(t)
			a := newNode(rdb, "node-a", Options{})
			mustClaim(t, a, ch, false)
			r := newNode(rdb, tc.releaser, Options{})
			taken := watchTakedowns(t, rdb, ch)
			if err := r.Release(ctx, ch, tc.takenDown); err != nil {
				t.Fatalf("Release by %s: %v", tc.releaser, err)
			}

			rec, ok, err := a.Lookup(ctx, ch)
			switch {
			case tc.wantLive:
				if err != nil || !ok || rec.Node != "node-a" || !rec.Publishing {
					t.Fatalf("Lookup = %+v, %v, %v; want node-a's live claim", rec, ok, err)
				}
			case tc.wantEnded:
				if !errors.Is(err, ErrEnded) || ok {
					t.Fatalf("Lookup of a channel taken down = %+v, %v, %v; want ErrEnded", rec, ok, err)
				}
			default:
				want := Record{Channel: ch, Node: "node-a", Addr: "http://node-a:8080"}
				if err != nil || !ok || rec.Channel != want.Channel || rec.Node != want.Node || rec.Addr != want.Addr || rec.Publishing || rec.Status != nil {
					t.Fatalf("Lookup of an ended channel = %+v, %v, %v; want %+v: not publishing, where its ended playlist is", rec, ok, err, want)
				}
			}
			live, err := a.Live(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(live) == 1; got != tc.wantLive {
				t.Errorf("Live = %+v; want listed %v", live, tc.wantLive)
			}
			if n := rdb.ZCard(ctx, indexKey).Val(); (n == 1) != tc.wantLive {
				t.Errorf("index has %d entries", n)
			}
			if tc.wantLive {
				if mustClaimErr(t, newNode(rdb, "node-c", Options{}), ch) == nil {
					t.Error("node-c claimed a channel node-a still publishes")
				}
			} else {
				// A new claim, on any node, ends the ended state: once that
				// claim expires in turn, no node holds the channel.
				mustClaim(t, newNode(rdb, "node-c", Options{TTL: 300 * time.Millisecond}), ch, false)
				if rec, ok := lookup(t, a, ch); !ok || rec.Node != "node-c" || !rec.Publishing {
					t.Errorf("Lookup after node-c claimed = %+v, %v", rec, ok)
				}
				var rec Record
				var ok bool
				var err error
				waitFor(t, 5*time.Second, "node-c's claim never expires", func() bool {
					rec, ok, err = a.Lookup(ctx, ch)
					return err != nil || !ok || rec.Node != "node-c"
				})
				if err != nil || ok {
					t.Errorf("Lookup after node-c's claim expired = %+v, %v, %v; want not found (node-a's ending went with node-c's claim)", rec, ok, err)
				}
			}
			// Only a takedown by the holder is announced.
			wantAnnounced := tc.takenDown && !tc.wantLive
			select {
			case got := <-taken:
				if !wantAnnounced || got != ch {
					t.Errorf("takedown of %q announced", got)
				}
			case <-time.After(300 * time.Millisecond):
				if wantAnnounced {
					t.Error("takedown not announced")
				}
			}
		})
	}

	t.Run("the ended state lasts TTL and grace", func(t *testing.T) {
		rdb := testClient(t)
		a := newNode(rdb, "node-a", Options{TTL: 400 * time.Millisecond, Grace: 400 * time.Millisecond})
		mustClaim(t, a, ch, false)
		start := time.Now()
		if err := a.Release(ctxT(t), ch, true); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the takedown never expires", func() bool {
			_, ok, err := a.Lookup(ctxT(t), ch)
			return err == nil && !ok
		})
		if d := time.Since(start); d < 700*time.Millisecond {
			t.Errorf("the takedown expired after %v, before TTL+Grace (800ms)", d)
		}
	})

	t.Run("of a channel nobody holds", func(t *testing.T) {
		rdb := testClient(t)
		if err := newNode(rdb, "node-a", Options{}).Release(ctxT(t), "none", false); err != nil {
			t.Fatal(err)
		}
	})
}

func mustClaimErr(t *testing.T, r *Registry, channel string) error {
	t.Helper()
	err := r.Claim(ctxT(t), channel, false)
	if err != nil && !errors.Is(err, ingest.ErrClaimed) {
		t.Fatalf("Claim: %v", err)
	}
	return err
}

// watchTakedowns runs WatchTakedowns of a node until the test ends and
// returns the channels named want it is told of, once it is subscribed (it
// was told of a probe). Takedowns are announced to every database of the
// Redis server: those of others are left out.
func watchTakedowns(t *testing.T, rdb *redis.Client, want string) <-chan string {
	t.Helper()
	probe := want + "-probe"
	got := make(chan string, 10)
	probed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w := newNode(rdb, "node-w", Options{})
	go func() {
		defer close(done)
		w.WatchTakedowns(ctx, func(ch string) {
			switch ch {
			case want:
				got <- ch
			case probe:
				select {
				case probed <- struct{}{}:
				default:
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := rdb.Publish(ctxT(t), takedowns, probe).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-probed:
			return got
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("WatchTakedowns not subscribed after 5s")
		}
	}
}

func TestLiveListsEveryNodeAndDropsExpired(t *testing.T) {
	rdb := testClient(t)
	h := &held{}
	h.set(Record{Channel: "a-beating", Publishing: true})
	a := newNode(rdb, "node-a", Options{TTL: time.Second, Held: h.get})
	b := newNode(rdb, "node-b", Options{TTL: time.Minute})
	start := time.Now()
	mustClaim(t, a, "a-expiring", false)
	mustClaim(t, a, "a-beating", false)
	mustClaim(t, b, "b-long", false)

	live := func() map[string]string {
		recs, err := b.Live(ctxT(t))
		if err != nil {
			t.Fatalf("Live: %v", err)
		}
		m := map[string]string{}
		for _, r := range recs {
			m[r.Channel] = r.Node
		}
		return m
	}
	want := map[string]string{"a-expiring": "node-a", "a-beating": "node-a", "b-long": "node-b"}
	if got := live(); !mapsEqual(got, want) {
		t.Fatalf("Live = %v, want %v", got, want)
	}

	// A beats for one channel only: the other one expires after its 1 s TTL.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	waitFor(t, 5*time.Second, "a-expiring still listed", func() bool { _, ok := live()["a-expiring"]; return !ok })
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("a-expiring dropped after %v, before its TTL", d)
	}
	want = map[string]string{"a-beating": "node-a", "b-long": "node-b"}
	if got := live(); !mapsEqual(got, want) {
		t.Errorf("Live with A beating = %v, want %v", got, want)
	}
	if n := rdb.ZCard(ctxT(t), indexKey).Val(); n != 2 {
		t.Errorf("index keeps %d channels, want the 2 live", n)
	}

	// A stops: its channel expires, B's stays.
	cancel()
	<-done
	waitFor(t, 5*time.Second, "a-beating still listed after A stopped", func() bool { _, ok := live()["a-beating"]; return !ok })
	want = map[string]string{"b-long": "node-b"}
	if got := live(); !mapsEqual(got, want) {
		t.Errorf("Live after A stopped = %v, want %v", got, want)
	}
	if _, ok := lookup(t, b, "a-beating"); ok {
		t.Error("Lookup finds the expired channel")
	}
}

func TestLiveEmpty(t *testing.T) {
	rdb := testClient(t)
	recs, err := newNode(rdb, "node-a", Options{}).Live(ctxT(t))
	if err != nil || len(recs) != 0 {
		t.Fatalf("Live of an empty registry = %v, %v", recs, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestLookup(t *testing.T) {
	rdb := testClient(t)
	const ch = "look"
	status := json.RawMessage(`{"name":"look","live":true,"viewers":3}`)
	h := &held{}
	a := newNode(rdb, "node-a", Options{Held: h.get})
	b := newNode(rdb, "node-b", Options{})

	if rec, ok := lookup(t, b, ch); ok {
		t.Fatalf("Lookup before any claim = %+v, true", rec)
	}
	before := time.Now().Add(-time.Second)
	mustClaim(t, a, ch, false)
	rec, ok := lookup(t, b, ch)
	if !ok || rec.Channel != ch || rec.Node != "node-a" || rec.Addr != "http://node-a:8080" || !rec.Publishing {
		t.Fatalf("Lookup after the claim = %+v, %v", rec, ok)
	}
	if rec.Updated.Before(before) || rec.Updated.After(time.Now().Add(time.Second)) {
		t.Errorf("Updated = %v, not now", rec.Updated)
	}

	h.set(Record{Channel: ch, Publishing: true, Status: status, Position: Position{MSN: 7, Disc: 1}})
	a.beat(ctxT(t))
	rec, ok = lookup(t, b, ch)
	if !ok || rec.Node != "node-a" || rec.Addr != "http://node-a:8080" {
		t.Fatalf("Lookup after a beat = %+v, %v", rec, ok)
	}
	if !bytes.Equal(rec.Status, status) {
		t.Errorf("Status = %s, want %s", rec.Status, status)
	}
	if rec.Position != (Position{MSN: 7, Disc: 1}) {
		t.Errorf("Position = %+v", rec.Position)
	}
}

// resumes records the positions Options.Resume was told of.
type resumes struct {
	mu  sync.Mutex
	got map[string][]Position
}

func (r *resumes) fn(channel string, pos Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]Position{}
	}
	r.got[channel] = append(r.got[channel], pos)
}

func (r *resumes) of(channel string) []Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[channel])
}

func TestResumeAfterTheHolderExpired(t *testing.T) {
	rdb := testClient(t)
	const ch = "moving"
	h := &held{}
	resA, resB := &resumes{}, &resumes{}
	a := newNode(rdb, "node-a", Options{TTL: time.Second, Grace: 30 * time.Second, Held: h.get, Resume: resA.fn})
	b := newNode(rdb, "node-b", Options{Resume: resB.fn})

	mustClaim(t, a, ch, false)
	if got := resA.of(ch); len(got) != 0 {
		t.Fatalf("a first claim resumed at %+v", got)
	}
	h.set(Record{Channel: ch, Publishing: true, Position: Position{MSN: 42, Disc: 3}})
	a.beat(ctxT(t))

	// A dies: no more beats. Its claim expires after the TTL; the position stays for the grace.
	waitFor(t, 5*time.Second, "A's claim did not expire", func() bool { _, ok := lookup(t, b, ch); return !ok })
	mustClaim(t, b, ch, false)
	if got := resB.of(ch); len(got) != 1 || got[0] != (Position{MSN: 42, Disc: 3}) {
		t.Fatalf("B's Resume calls = %+v, want one at {MSN:42 Disc:3}", got)
	}
	if rec, ok := lookup(t, b, ch); !ok || rec.Node != "node-b" {
		t.Errorf("holder after B's claim = %+v, %v", rec, ok)
	}

	// A channel without a stored position resumes nothing.
	mustClaim(t, b, "fresh", false)
	if got := resB.of("fresh"); len(got) != 0 {
		t.Errorf("a claim of a fresh channel resumed at %+v", got)
	}
}

func TestRedisUnreachable(t *testing.T) {
	// Nothing listens on port 1: every call fails at once.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	lostA := newLost()
	h := &held{}
	h.set(Record{Channel: "ch", Publishing: true})
	r := newNode(rdb, "node-a", Options{Held: h.get, Lost: lostA.fn})
	ctx := ctxT(t)

	for _, takeover := range []bool{false, true} {
		err := r.Claim(ctx, "ch", takeover)
		if err == nil {
			t.Fatalf("Claim(takeover=%v) with Redis unreachable succeeded", takeover)
		}
		if errors.Is(err, ingest.ErrClaimed) {
			t.Fatalf("Claim(takeover=%v) with Redis unreachable = %v: wraps ErrClaimed, ingest would refuse the publisher", takeover, err)
		}
	}
	if err := r.Release(ctx, "ch", false); err == nil {
		t.Error("Release with Redis unreachable succeeded")
	}
	if _, ok, err := r.Lookup(ctx, "ch"); err == nil || ok {
		t.Errorf("Lookup with Redis unreachable = %v, %v", ok, err)
	}
	if recs, err := r.Live(ctx); err == nil {
		t.Errorf("Live with Redis unreachable = %v, nil", recs)
	}
	r.beat(ctx)
	if got := lostA.all(); len(got) != 0 {
		t.Errorf("a failed beat reported channels lost: %+v", got)
	}
}

// gate lets a test cut a real Redis client off its server and reconnect it.
type gate struct {
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func (g *gate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		return nil, errors.New("gate closed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		g.conns = append(g.conns, c)
	}
	return c, err
}

func (g *gate) setDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
	if down {
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// An outage is logged once when it starts and once when it ends, however
// many calls fail.
func TestOutageLoggedOnce(t *testing.T) {
	testClient(t) // skips without Redis, empties the db
	g := &gate{}
	rdb := redis.NewClient(&redis.Options{Addr: testAddr, DB: testDB, Dialer: g.dial, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	var logs syncBuf
	r := newNode(rdb, "node-a", Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := ctxT(t)

	mustClaim(t, r, "ch", false)
	if err := r.Healthy(); err != nil {
		t.Fatalf("Healthy before the outage: %v", err)
	}
	g.setDown(true)
	for i := 0; i < 3; i++ {
		if err := r.Claim(ctx, "ch", false); err == nil || errors.Is(err, ingest.ErrClaimed) {
			t.Fatalf("Claim while cut off = %v", err)
		}
		if _, err := r.Live(ctx); err == nil {
			t.Fatal("Live while cut off succeeded")
		}
	}
	if n := logs.count("registry unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs.b.String())
	}
	if r.Healthy() == nil {
		t.Error("Healthy during the outage")
	}
	g.setDown(false)
	for i := 0; i < 3; i++ {
		if rec, ok, err := r.Lookup(ctx, "ch"); err != nil || !ok || rec.Node != "node-a" {
			t.Fatalf("Lookup after reconnecting = %+v, %v, %v", rec, ok, err)
		}
	}
	if err := r.Healthy(); err != nil {
		t.Errorf("Healthy after the outage: %v", err)
	}
	if n := logs.count("registry reachable again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs.b.String())
	}
	if n := logs.count("registry unreachable"); n != 1 {
		t.Errorf("outage logged %d times in all, want once", n)
	}
}

func TestNewDefaults(t *testing.T) {
	r := New(nil, Options{Node: "n"})
	if r.opts.TTL != DefaultTTL || r.log == nil || r.Node() != "n" {
		t.Fatalf("New defaults: TTL %v, logger %v, node %q", r.opts.TTL, r.log, r.Node())
	}
}
