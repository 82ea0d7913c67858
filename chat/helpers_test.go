package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const testRedisURL = "redis://127.0.0.1:6379/0"

var roomSeq atomic.Int64

// uniqueRoom returns a channel name no other test (or earlier run) uses.
func uniqueRoom(t *testing.T) string {
	return fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, roomSeq.Add(1))
}

// testOptions are defaults with short timers and a proxy header so tests can pose as many IPs.
func testOptions() Options {
	o := DefaultOptions()
	o.PresenceInterval = 100 * time.Millisecond
	o.TrustProxy = true
	o.Secret = []byte("test-secret")
	o.AdminToken = "admin-token"
	return o
}

type node struct {
	srv  *Server
	hs   *httptest.Server
	url  string
	stop func() // idempotent; also run at cleanup
}

func startNode(t *testing.T, o Options) *node {
	t.Helper()
	s := NewServer(o)
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
	t     *testing.T
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
	return c, nil
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
