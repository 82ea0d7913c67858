package chat

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// dialWith connects with the given request headers; it returns the HTTP status of a refused
// handshake.
func dialWith(n *node, room string, h http.Header) (*websocket.Conn, int, error) {
	conn, resp, err := websocket.DefaultDialer.Dial(n.url+room, h)
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode, err
		}
		return nil, 0, err
	}
	return conn, http.StatusSwitchingProtocols, nil
}

// A client that writes its own X-Forwarded-For line, before the one the trusted proxy
// appends, is still counted under the address the proxy saw (issue 9, item 7: 40 of 40
// connections got past a limit of 20 when the first line was believed).
func TestSpoofedForwardedForIsNotBelieved(t *testing.T) {
	n := startNode(t, testOptions()) // loopback is the trusted proxy; limit 20 per IP
	room := uniqueRoom(t)
	accepted, refused := 0, 0
	for i := range 40 {
		h := http.Header{}
		h.Add("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i)) // the client's own line
		h.Add("X-Forwarded-For", "10.9.0.1")                      // the proxy's line
		c, err := tryDialHeader(n, room, h)
		if err != nil {
			t.Fatal(err)
		}
		c.t = t
		select {
		case m := <-c.lines:
			if m["type"] != "welcome" {
				t.Fatalf("got %v", m)
			}
			accepted++
			t.Cleanup(func() { c.conn.Close() })
		case <-c.done:
			if code := c.closeCode(); code != websocket.ClosePolicyViolation {
				t.Fatalf("close code %d", code)
			}
			refused++
		}
	}
	if accepted != 20 || refused != 20 {
		t.Fatalf("accepted %d, refused %d; want 20 and 20", accepted, refused)
	}

	// With no trusted proxy, the header is not read at all: the peer is the client.
	o := testOptions()
	o.TrustedProxies = nil
	o.ConnsPerIP = 2
	m := startNode(t, o)
	for i := range 3 {
		c, err := tryDialHeader(m, room, http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		c.t = t
		t.Cleanup(func() { c.conn.Close() })
		if i < 2 {
			c.next("welcome")
		} else if code := c.closeCode(); code != websocket.ClosePolicyViolation {
			t.Fatalf("third connection from 127.0.0.1: close code %d", code)
		}
	}
}

func tryDialHeader(n *node, room string, h http.Header) (*tclient, error) {
	conn, _, err := websocket.DefaultDialer.Dial(n.url+room, h)
	if err != nil {
		return nil, err
	}
	return readLines(conn), nil
}

// Pages of other sites cannot open chat from their visitors' browsers (item 9).
func TestOriginAllowList(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		origin  string
		want    int
	}{
		{"no Origin (not a browser)", nil, "", http.StatusSwitchingProtocols},
		{"same host by default", nil, "SAME", http.StatusSwitchingProtocols},
		{"other site refused by default", nil, "https://evil.example", http.StatusForbidden},
		{"null origin refused", nil, "null", http.StatusForbidden},
		{"listed origin", []string{"https://watch.example"}, "https://watch.example", http.StatusSwitchingProtocols},
		{"listed origin, default port and case", []string{"https://Watch.example:443/"}, "https://watch.example", http.StatusSwitchingProtocols},
		{"scheme matters", []string{"https://watch.example"}, "http://watch.example", http.StatusForbidden},
		{"same host still allowed with a list", []string{"https://watch.example"}, "SAME", http.StatusSwitchingProtocols},
		{"unlisted origin", []string{"https://watch.example"}, "https://watch.example.evil.example", http.StatusForbidden},
		{"any", []string{"*"}, "https://evil.example", http.StatusSwitchingProtocols},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions()
			o.AllowedOrigins = c.allowed
			n := startNode(t, o)
			h := http.Header{}
			switch c.origin {
			case "":
			case "SAME":
				h.Set("Origin", n.hs.URL)
			default:
				h.Set("Origin", c.origin)
			}
			conn, status, err := dialWith(n, uniqueRoom(t), h)
			if conn != nil {
				conn.Close()
			}
			if status != c.want {
				t.Fatalf("status %d (%v), want %d", status, err, c.want)
			}
			if c.want == http.StatusForbidden && !strings.Contains(metricsText(t, n), `onair_chat_refused_connections_total{reason="origin"} 1`) {
				t.Fatal("refusal not counted")
			}
		})
	}
}

// Rooms exist only for channels onair knows (item 6): 3,000 junk names are refused before
// the upgrade and leave nothing behind.
func TestUnknownChannelsAreRefused(t *testing.T) {
	o := testOptions()
	o.Known = func(ch string) bool { return ch == "main" }
	bus := NewMemoryBus(MemoryOptions{})
	o.Bus = bus
	n := startNode(t, o)
	base := heapAfterGC()

	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 3000; i += 8 {
				h := http.Header{"X-Forwarded-For": {fmt.Sprintf("10.30.%d.%d", i/250, i%250)}}
				_, status, _ := dialWith(n, fmt.Sprintf("junk-%d", i), h)
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusNotFound] != 3000 {
		t.Fatalf("statuses %v, want 3000 × 404", statuses)
	}
	n.srv.mu.Lock()
	rooms := len(n.srv.rooms)
	n.srv.mu.Unlock()
	if rooms != 0 || bus.Rooms() != 0 {
		t.Fatalf("%d server rooms, %d bus rooms after refusals", rooms, bus.Rooms())
	}
	// Per-address state is kept a minute (the handshake budget), then dropped.
	n.srv.sweep(timeNowPlus(2 * n.srv.ipRetention()))
	if grew := heapAfterGC() - base; grew > 512<<10 {
		t.Fatalf("heap grew by %d KiB", grew>>10)
	}
	if !strings.Contains(metricsText(t, n), `onair_chat_refused_connections_total{reason="unknown_channel"} 3000`) {
		t.Fatal("refusals not counted")
	}
	// The known channel works.
	c, _ := join(t, n, "main", "10.31.0.1", "alice")
	c.write(map[string]any{"type": "send", "text": "hi"})
	c.next("msg")
}

// Each address gets a budget of WebSocket handshakes per minute.
func TestUpgradeRatePerIP(t *testing.T) {
	o := testOptions()
	o.UpgradesPerMinute = 5
	n := startNode(t, o)
	room := uniqueRoom(t)
	h := http.Header{"X-Forwarded-For": {"10.32.0.1"}}
	for i := range 5 {
		conn, status, err := dialWith(n, room, h)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d: %d %v", i, status, err)
		}
		conn.Close()
	}
	resp, err := http.Get(n.hs.URL + "/chat/" + room)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// That plain GET came from 127.0.0.1, its own budget: a 400 (not a WebSocket request).
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", n.hs.URL+"/chat/"+room, nil)
	req.Header.Set("X-Forwarded-For", "10.32.0.1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth attempt: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	conn, status, _ := dialWith(n, room, http.Header{"X-Forwarded-For": {"10.32.0.2"}})
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("another address: %d", status)
	}
	// Closed here: a connection nobody reads cannot finish the close handshake, so Shutdown would wait for it.
	conn.Close()
	if !strings.Contains(metricsText(t, n), `onair_chat_refused_connections_total{reason="upgrade_rate"} 1`) {
		t.Fatal("refusal not counted")
	}
}
