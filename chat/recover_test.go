package chat

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// faultBus is a MemoryBus that panics on demand, to stand for a bug anywhere below a
// connection's or a room's goroutine.
type faultBus struct {
	*MemoryBus
	historyPanics  atomic.Int32 // History panics this many more times
	presencePanics atomic.Int32
}

func (b *faultBus) Publish(ctx context.Context, room string, e *Event, n int) error {
	if bytes.Contains(e.Body, []byte("boom")) {
		panic("faultBus: publish boom")
	}
	return b.MemoryBus.Publish(ctx, room, e, n)
}

func (b *faultBus) History(ctx context.Context, room string, n int) ([]Event, error) {
	if b.historyPanics.Add(-1) >= 0 {
		panic("faultBus: history")
	}
	return b.MemoryBus.History(ctx, room, n)
}

func (b *faultBus) Presence(ctx context.Context, room string, local int) (int, error) {
	if b.presencePanics.Add(-1) >= 0 {
		panic("faultBus: presence")
	}
	return b.MemoryBus.Presence(ctx, room, local)
}

// A panic in a connection's or a room's goroutine is logged and counted; the connection
// gets 1011 and the room keeps working for everyone else.
func TestPanicsAreRecovered(t *testing.T) {
	bus := &faultBus{MemoryBus: NewMemoryBus(MemoryOptions{})}
	bus.historyPanics.Store(1)  // the room's start
	bus.presencePanics.Store(2) // the room's first presence reports
	o := testOptions()
	o.Bus = bus
	n := startNode(t, o)
	room := uniqueRoom(t)

	alice, _ := join(t, n, room, "10.70.0.1", "alice")
	bob, _ := join(t, n, room, "10.70.0.2", "bob")
	waitFor(t, "viewer counts despite presence panics", func() bool { return n.srv.ViewerCount(room) == 2 })

	// In the reader of a connection.
	alice.write(map[string]any{"type": "send", "text": "boom"})
	if code := alice.closeCode(); code != websocket.CloseInternalServerErr {
		t.Fatalf("close code %d", code)
	}
	bob.write(map[string]any{"type": "send", "text": "still fine"})
	for bob.next("msg")["text"] != "still fine" {
	}

	// In the room's delivery loop.
	bus.historyPanics.Store(1)
	n.srv.mu.Lock()
	r := n.srv.rooms[room]
	n.srv.mu.Unlock()
	r.push(Event{Fill: true})
	bob.write(map[string]any{"type": "send", "text": "after the room's panic"})
	for bob.next("msg")["text"] != "after the room's panic" {
	}
	carol, _ := join(t, n, room, "10.70.0.3", "carol")
	carol.write(map[string]any{"type": "send", "text": "new here"})
	for bob.next("msg")["text"] != "new here" {
	}

	waitFor(t, "5 panics counted", func() bool { return n.srv.metrics.panics.Load() == 5 })
	if !strings.Contains(metricsText(t, n), "onair_chat_panics_total 5") {
		t.Fatal("panics metric")
	}
}
