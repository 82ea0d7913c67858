package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestFloodIsRateLimited(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	spam, _ := join(t, n, room, "10.2.0.1", "spammer")
	good, _ := join(t, n, room, "10.2.0.2", "good")
	for i := 0; i < 20; i++ {
		spam.write(map[string]any{"type": "send", "text": "spam", "ref": "s"})
	}
	accepted, limited := 0, 0
	for accepted+limited < 20 {
		select {
		case m := <-spam.lines:
			switch {
			case m["type"] == "msg":
				accepted++
			case m["type"] == "error" && m["code"] == codeRateLimited:
				if m["retry_after_ms"].(float64) <= 0 || m["ref"] != "s" {
					t.Fatalf("got %v", m)
				}
				limited++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("accepted %d limited %d", accepted, limited)
		}
	}
	if accepted != 5 || limited != 15 {
		t.Fatalf("accepted %d limited %d, want 5 and 15", accepted, limited)
	}
	// Others are unaffected.
	good.write(map[string]any{"type": "send", "text": "still fine"})
	for good.next("msg")["text"] != "still fine" {
	}
	// A second connection from the flooding IP shares the IP budget (10 per 5 s: 5 left).
	spam2, _ := join(t, n, room, "10.2.0.1", "spammer2")
	for i := 0; i < 6; i++ {
		spam2.write(map[string]any{"type": "send", "text": "more"})
	}
	if e := spam2.next("error"); e["code"] != codeRateLimited {
		t.Fatalf("got %v", e)
	}
}

func TestInvalidInput(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	c, _ := join(t, n, room, "10.3.0.1", "eve")
	for _, bad := range []string{"not json", "[1,2]", `{"type":`, ""} {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if e := c.next("error"); e["code"] != codeBadJSON {
			t.Fatalf("%q: got %v", bad, e)
		}
	}
	c.write(map[string]any{"type": "dance"})
	if e := c.next("error"); e["code"] != codeUnknownType {
		t.Fatalf("got %v", e)
	}
	// Still connected.
	c.write(map[string]any{"type": "ping", "ref": "p"})
	if p := c.next("pong"); p["ref"] != "p" {
		t.Fatalf("got %v", p)
	}
	// A ref is echoed as sent, or the request is refused; never cut (found by FuzzClientFrame:
	// a ref cut inside a character came back longer, and not as sent).
	long := strings.Repeat("é", 32) // 64 bytes
	c.write(map[string]any{"type": "ping", "ref": long})
	if p := c.next("pong"); p["ref"] != long {
		t.Fatalf("got %v", p)
	}
	c.write(map[string]any{"type": "ping", "ref": long + "x"})
	if e := c.next("error"); e["code"] != codeBadRequest || e["ref"] != nil {
		t.Fatalf("got %v", e)
	}
	// Forged moderator tokens.
	for _, tok := range []string{
		SignModeratorToken([]byte("wrong-secret"), room, time.Hour),
		SignModeratorToken([]byte("test-secret"), "other-room", time.Hour),
		SignModeratorToken([]byte("test-secret"), room, -time.Second),
		"v1." + room + ".99999999999.AAAA",
		"v2." + room + ".99999999999.AAAAAAAAAAAAAAAA.AAAA",
		"admin-token",
	} {
		c.write(map[string]any{"type": "join", "name": "eve", "token": tok})
		if e := c.next("error"); e["code"] != codeBadToken {
			t.Fatalf("token %q: got %v", tok, e)
		}
	}
	c.write(map[string]any{"type": "ban", "user": "u_x"})
	if e := c.next("error"); e["code"] != codeForbidden {
		t.Fatalf("got %v", e)
	}
	// A token in the URL is refused before the upgrade: it would sit in access logs.
	if _, err := tryDial(n, room, "10.3.0.2", "name=fake&token=forged"); err == nil || !strings.Contains(err.Error(), "bad handshake") {
		t.Fatalf("token in the URL: %v", err)
	}
	// Bad channel names never upgrade.
	resp, err := http.Get(n.hs.URL + "/chat/Bad.Name")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	o := testOptions()
	o.ConnsPerIP = 3
	n := startNode(t, o)
	room := uniqueRoom(t)
	for i := 0; i < 3; i++ {
		dial(t, n, room, "10.4.0.1", "").next("welcome")
	}
	c, err := tryDial(n, room, "10.4.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	if code := c.closeCode(); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	dial(t, n, room, "10.4.0.2", "").next("welcome") // other IPs are fine
}

// A viewer that never reads is cut off; the others keep their normal delay.
func TestSlowReaderIsCutOff(t *testing.T) {
	o := testOptions()
	o.SocketSendBuffer = 8 << 10
	o.MaxQueueBytes = 64 << 10
	o.FrameInterval = -1 // one frame per event: fill the stalled socket fast
	n := startNode(t, o)
	room := uniqueRoom(t)

	// The stalled viewer: a tiny receive buffer and no reads at all.
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	h := http.Header{"X-Forwarded-For": {"10.5.0.1"}}
	stalled, _, err := d.Dial(n.url+room, h)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	good, _ := join(t, n, room, "10.5.0.2", "good")

	text := strings.Repeat("x", 480)
	var worst time.Duration
	for i := 0; i < 600; i++ {
		start := time.Now()
		if err := n.srv.Announce(room, SystemNotice, text, ""); err != nil {
			t.Fatal(err)
		}
		good.next("system")
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	waitFor(t, "slow consumer closed", func() bool { return n.srv.metrics.slowClosed.Load() == 1 })
	waitFor(t, "only the good viewer left", func() bool { return n.srv.metrics.conns.Load() == 1 })
	n.srv.mu.Lock()
	r := n.srv.rooms[room]
	n.srv.mu.Unlock()
	waitFor(t, "no frames in flight", func() bool { return r.inflight.Load() == 0 })
	if worst > 200*time.Millisecond {
		t.Fatalf("good viewer's worst delay %v", worst)
	}
	t.Logf("good viewer's worst delay %v", worst)
}

// A reader that lags but keeps up within its queue budget gets every frame intact and in
// order, across partial socket writes and the hand-over to the writer goroutine.
func TestLaggingReaderGetsEverythingInOrder(t *testing.T) {
	o := testOptions()
	o.SocketSendBuffer = 8 << 10
	o.MaxQueueBytes = 8 << 20
	o.FrameInterval = -1
	n := startNode(t, o)
	room := uniqueRoom(t)
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(32 << 10)
		}
		return c, err
	}}
	conn, _, err := d.Dial(n.url+room, http.Header{"X-Forwarded-For": {"10.5.1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, w, err := conn.ReadMessage(); err != nil || !strings.Contains(string(w), `"welcome"`) {
		t.Fatalf("welcome: %s %v", w, err)
	}
	const total = 300
	go func() {
		for i := 0; i < total; i++ {
			n.srv.Announce(room, SystemNotice, fmt.Sprintf("%d %s", i, strings.Repeat("y", 1000+i)), "")
		}
	}()
	next := 0
	for next < total {
		time.Sleep(time.Millisecond)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("after %d: %v", next, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("corrupt line after %d: %v", next, err)
			}
			if m["type"] != "system" {
				continue
			}
			want := fmt.Sprintf("%d %s", next, strings.Repeat("y", 1000+next))
			if m["text"] != want {
				t.Fatalf("event %d: got %.20q", next, m["text"])
			}
			next++
		}
	}
	if n.srv.metrics.queued.Load() == 0 {
		t.Fatal("no frame went through the writer's queue; the test did not lag")
	}
}

// A connection whose writer goroutine last wrote (a ping) longer than WriteTimeout ago still
// gets the room's frames. The writer's deadline used to stay set: once expired, every direct
// write from the fan-out failed with a timeout and the viewer was cut off without a close
// frame, 10 to 30 s after each ping (found by FuzzClientFrame on a long-lived connection).
func TestConnectionOutlivesItsWriteDeadline(t *testing.T) {
	o := testOptions()
	o.PingInterval, o.PongWait, o.WriteTimeout = 100*time.Millisecond, 2*time.Second, 20*time.Millisecond
	n := startNode(t, o)
	room := uniqueRoom(t)
	c, _ := join(t, n, room, "10.9.9.1", "alice")
	for i := range 5 {
		time.Sleep(250 * time.Millisecond) // a ping was written, and its deadline passed
		text := fmt.Sprint("after a ping ", i)
		if err := n.srv.Announce(room, SystemNotice, text, ""); err != nil {
			t.Fatal(err)
		}
		for c.next("system")["text"] != text {
		}
	}
}
