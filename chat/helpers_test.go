package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onairhq/onair/internal/metricstest"
)

const testRedisURL = "redis://127.0.0.1:6379/0"

var roomSeq atomic.Int64

// uniqueRoom returns a channel name no other test (or earlier run) uses.
func uniqueRoom(t *testing.T) string {
	return fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, roomSeq.Add(1))
}

// testOptions are defaults with short timers, and loopback trusted as a proxy so tests can
// pose as many IPs through X-Forwarded-For.
func testOptions() Options {
	o := DefaultOptions()
	o.PresenceInterval = 100 * time.Millisecond
	o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	o.Secret = []byte("test-secret")
	return o
}

type node struct {
	srv  *Server
	hs   *httptest.Server
	url  string
	stop func() // idempotent; also run at cleanup
}

func startNode(t testing.TB, o Options) *node {
	t.Helper()
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/chat/{channel}", s)
	hs := httptest.NewServer(mux)
	n := &node{srv: s, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/chat/"}
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			hs.Close()
		})
	}
	t.Cleanup(n.stop)
	return n
}

func newRedisBus(t *testing.T, url, node string) *RedisBus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, err := NewRedisBus(ctx, url, node, nil, RedisOptions{PresenceTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err != nil {
		b.Close()
		t.Skipf("redis at %s not reachable: %v", url, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type tclient struct {
	t     testing.TB
	conn  *websocket.Conn
	lines chan map[string]any
	done  chan struct{}
	err   error // set before done closes
}

// dial connects to a room as ip (sent as X-Forwarded-For); query is appended to the URL.
func dial(t *testing.T, n *node, room, ip, query string) *tclient {
	t.Helper()
	c, err := tryDial(n, room, ip, query)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.conn.Close() })
	c.t = t
	return c
}

func tryDial(n *node, room, ip, query string) (*tclient, error) {
	h := http.Header{}
	h.Set("X-Forwarded-For", ip)
	u := n.url + room
	if query != "" {
		u += "?" + query
	}
	conn, _, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		return nil, err
	}
	return readLines(conn), nil
}

// readLines starts reading conn's frames into a tclient's lines.
func readLines(conn *websocket.Conn) *tclient {
	c := &tclient{conn: conn, lines: make(chan map[string]any, 10000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			for _, l := range strings.Split(string(data), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					c.err = fmt.Errorf("bad line %q: %v", l, err)
					return
				}
				c.lines <- m
			}
		}
	}()
	return c
}

func (c *tclient) write(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next object of type typ, skipping others (viewer counts, ...).
func (c *tclient) next(typ string) map[string]any {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-c.lines:
			if m["type"] == typ {
				return m
			}
		case <-c.done:
			c.t.Fatalf("connection ended waiting for %q: %v", typ, c.err)
		case <-timeout:
			c.t.Fatalf("timed out waiting for %q", typ)
		}
	}
}

// closeCode waits for the connection to end and returns the close code it got.
func (c *tclient) closeCode() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.t.Fatal("connection not closed")
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	return -1
}

// join connects, reads the welcome and returns the client and its user id.
func join(t *testing.T, n *node, room, ip, name string) (*tclient, string) {
	t.Helper()
	c := dial(t, n, room, ip, "name="+name)
	w := c.next("welcome")
	return c, w["you"].(map[string]any)["id"].(string)
}

// modJoin connects as a moderator of room (a token signed with testOptions' secret, sent in
// a join message) and returns the client and its user id once joined.
func modJoin(t *testing.T, n *node, room, ip, name string) (*tclient, string) {
	t.Helper()
	c := dial(t, n, room, ip, "")
	c.next("welcome")
	c.write(map[string]any{"type": "join", "name": name, "token": SignModeratorToken([]byte("test-secret"), room, time.Hour)})
	j := c.next("joined")
	you := j["you"].(map[string]any)
	if you["mod"] != true {
		t.Fatalf("not a moderator: %v", j)
	}
	return c, you["id"].(string)
}

// heapAfterGC returns the live heap after a full collection.
func heapAfterGC() int64 {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func timeNowPlus(d time.Duration) time.Time { return time.Now().Add(d) }

// metricsText returns the node's /metrics text.
func metricsText(t *testing.T, n *node) string {
	t.Helper()
	var b strings.Builder
	if err := metricstest.Write(&b, n.srv); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
