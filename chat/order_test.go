package chat

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Concurrent senders on two nodes: every viewer on every node sees one identical order.
func TestRedisOrderAcrossNodes(t *testing.T) {
	o := testOptions()
	o.ConnMessages, o.IPMessages = 1000, 1000
	a, b, _, _ := twoNodes(t, testRedisURL, o)
	room := uniqueRoom(t)
	var viewers []*tclient
	for i := 0; i < 4; i++ {
		n := a
		if i%2 == 1 {
			n = b
		}
		c, _ := join(t, n, room, fmt.Sprintf("10.7.0.%d", i), fmt.Sprint("v", i))
		viewers = append(viewers, c)
	}
	const senders, each = 6, 40
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		n := a
		if s%2 == 1 {
			n = b
		}
		c, _ := join(t, n, room, fmt.Sprintf("10.7.1.%d", s), fmt.Sprint("s", s))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c.conn.WriteJSON(map[string]any{"type": "send", "text": fmt.Sprint(s, "-", i)})
			}
		}()
	}
	wg.Wait()
	var want []string
	for vi, v := range viewers {
		var got []string
		var last float64
		for len(got) < senders*each {
			m := v.next("msg")
			if seq := m["seq"].(float64); last != 0 && seq != last+1 {
				t.Fatalf("viewer %d: seq %v after %v", vi, seq, last)
			} else {
				last = seq
			}
			got = append(got, m["id"].(string))
		}
		if want == nil {
			want = got
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("viewer %d differs at %d", vi, i)
			}
		}
	}
}

func TestShutdownClosesClients(t *testing.T) {
	base := runtime.NumGoroutine()
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	var cs []*tclient
	for i := 0; i < 20; i++ {
		c, _ := join(t, n, room, fmt.Sprintf("10.8.0.%d", i), "x")
		cs = append(cs, c)
	}
	n.stop()
	for _, c := range cs {
		if code := c.closeCode(); code != websocket.CloseGoingAway {
			t.Fatalf("close code %d", code)
		}
	}
	if n.srv.Ready() == nil {
		t.Fatal("ready after shutdown")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines %d > %d:\n%s", g, base, buf[:runtime.Stack(buf, true)])
	}
}

// Events arriving faster than FrameInterval share frames; each frame is prepared once.
func TestBusyRoomCoalesces(t *testing.T) {
	o := testOptions()
	o.FrameInterval = 100 * time.Millisecond
	n := startNode(t, o)
	room := uniqueRoom(t)
	c := dial(t, n, room, "10.9.0.1", "")
	c.next("welcome")
	time.Sleep(150 * time.Millisecond) // past the first viewer-count frame
	f0 := n.srv.metrics.frames.Load()
	for i := 0; i < 20; i++ {
		n.srv.Announce(room, SystemNotice, fmt.Sprint(i), "")
	}
	for i := 0; i < 20; i++ {
		if m := c.next("system"); m["text"] != fmt.Sprint(i) {
			t.Fatalf("got %v", m)
		}
	}
	if f := n.srv.metrics.frames.Load() - f0; f > 4 {
		t.Fatalf("%d frames for 20 events", f)
	}
}
