package ingest

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lifecycleLog records every observer call, the optional ones included.
type lifecycleLog struct {
	mu     sync.Mutex
	events []string
}

func (l *lifecycleLog) add(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, a...))
}

func (l *lifecycleLog) BroadcastStarted(b *Broadcast) { l.add("start %s", b.ID) }
func (l *lifecycleLog) BroadcastEnded(b *Broadcast, r EndReason, detail string) {
	l.add("end %s %s", b.ID, r)
}
func (l *lifecycleLog) PublisherLost(b *Broadcast, detail string) { l.add("lost %s %s", b.ID, detail) }
func (l *lifecycleLog) PublisherReturned(b *Broadcast)            { l.add("returned %s", b.ID) }
func (l *lifecycleLog) TakenDown(channel string, b *Broadcast, reason string, ban time.Duration) {
	id := "-"
	if b != nil {
		id = b.ID
	}
	l.add("takedown %s %s %s %v", channel, id, reason, ban)
}

func (l *lifecycleLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

var (
	_ PublisherObserver = (*lifecycleLog)(nil)
	_ TakedownObserver  = (*lifecycleLog)(nil)
)

// A publisher that drops and comes back within the grace period is reported
// lost and returned, and a takedown with its ban comes before the end it
// causes, all in order with the start and end; a plain Observer gets only
// starts and ends.
func TestPublisherAndTakedownObservers(t *testing.T) {
	needTools(t, "ffmpeg")
	src := filepath.Join(testMedia(t), "long.flv")
	ts := startHub(t, func(o *Options) { o.Grace = 5 * time.Second })
	lc := &lifecycleLog{}
	ts.hub.AddObserver(lc)

	first, _ := publish(t, src, ts.url("live", testKey))
	waitFor(t, "broadcast", 5*time.Second, func() bool { return len(ts.rec.broadcasts()) == 1 })
	b := ts.rec.broadcasts()[0]
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	waitFor(t, "publisher lost", 3*time.Second, func() bool { return len(lc.list()) == 2 })
	publish(t, src, ts.url("live", testKey))
	waitFor(t, "publisher returned", 5*time.Second, func() bool { return len(lc.list()) == 3 })
	if err := ts.hub.TakeDown("demo", "test violation", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := ts.hub.TakeDown("other", "not live", 0); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"start " + b.ID,
		"lost " + b.ID + " publisher disconnected",
		"returned " + b.ID,
		"takedown demo " + b.ID + " test violation 1m0s",
		"end " + b.ID + " taken_down",
		"takedown other - not live 0s",
	}
	waitFor(t, "the takedowns", 3*time.Second, func() bool { return len(lc.list()) == len(want) })
	if got := lc.list(); !slices.Equal(got, want) {
		t.Errorf("observer calls:\n%q\nwant\n%q", got, want)
	}
	if got := ts.obs.list(); !slices.Equal(got, []string{"start " + b.ID, "end " + b.ID + " taken_down"}) {
		t.Errorf("plain observer calls %q", got)
	}
}
