package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// chatLine is one JSON object a chat server sent.
type chatLine struct {
	Type    string          `json:"type"`
	Kind    string          `json:"kind"`
	Text    string          `json:"text"`
	Code    string          `json:"code"`
	Ref     string          `json:"ref"`
	Count   int             `json:"count"`
	User    json.RawMessage `json:"user"`
	You     struct{ ID string }
	Message string `json:"message"`
}

// userID is the sender's id of a msg line.
func (l chatLine) userID() string {
	var u struct{ ID string }
	json.Unmarshal(l.User, &u)
	return u.ID
}

// chatClient is one WebSocket chat connection read by its own goroutine.
type chatClient struct {
	ws    *websocket.Conn
	lines chan chatLine
	done  chan struct{} // closed when the connection ended
	mu    sync.Mutex
	close *websocket.CloseError // the close frame received, if any
	err   error                 // why reading stopped
	id    string                // from the welcome line
}

// openChat connects to /chat/{channel} at base (http://host:port). With from set, the
// connection leaves from that local address (127.0.0.x), so one test can be many viewers.
func openChat(base, channel, name, from string, header http.Header) (*chatClient, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if from != "" {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		d.NetDialContext = nd.DialContext
	}
	url := "ws" + strings.TrimPrefix(base, "http") + "/chat/" + channel
	if name != "" {
		url += "?name=" + name
	}
	ws, resp, err := d.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	c := &chatClient{ws: ws, lines: make(chan chatLine, 1024), done: make(chan struct{})}
	go c.read()
	return c, resp, nil
}

// mustOpenChat is openChat that fails the test on error and waits for the welcome.
func mustOpenChat(t testing.TB, base, channel, name, from string) *chatClient {
	t.Helper()
	c, _, err := openChat(base, channel, name, from, nil)
	if err != nil {
		t.Fatalf("chat %s from %s: %v", name, from, err)
	}
	t.Cleanup(func() { c.ws.Close() })
	w := c.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "welcome" })
	c.id = w.You.ID
	return c
}

func (c *chatClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.close = ce
			}
			c.mu.Unlock()
			return
		}
		for _, raw := range strings.Split(string(data), "\n") {
			var l chatLine
			if raw != "" && json.Unmarshal([]byte(raw), &l) == nil {
				select {
				case c.lines <- l:
				default: // a test that does not read lines does not block the reader
				}
			}
		}
	}
}

func (c *chatClient) send(t testing.TB, v any) {
	t.Helper()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteJSON(v); err != nil {
		t.Fatalf("chat send: %v", err)
	}
}

// say posts a message.
func (c *chatClient) say(t testing.TB, text string) {
	t.Helper()
	c.send(t, map[string]string{"type": "send", "text": text, "ref": text})
}

// waitFor returns the first line matching ok within timeout.
func (c *chatClient) waitFor(t testing.TB, timeout time.Duration, ok func(chatLine) bool) chatLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case l := <-c.lines:
			if ok(l) {
				return l
			}
		case <-c.done:
			// Lines read before the end may still be queued.
			for {
				select {
				case l := <-c.lines:
					if ok(l) {
						return l
					}
				default:
					t.Fatalf("chat connection ended while waiting: %v", c.ended())
				}
			}
		case <-ctx.Done():
			t.Fatalf("chat: nothing expected arrived within %s", timeout)
		}
	}
}

// waitForTexts waits for chat messages with each of texts, in any order: messages sent
// by different clients have no order until the bus gives them one.
func (c *chatClient) waitForTexts(t testing.TB, timeout time.Duration, texts ...string) {
	t.Helper()
	want := make(map[string]bool, len(texts))
	for _, text := range texts {
		want[text] = true
	}
	deadline := time.Now().Add(timeout)
	for len(want) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			var missing []string
			for text := range want {
				missing = append(missing, text)
			}
			t.Fatalf("chat: %q not arrived within %s", missing, timeout)
		}
		l := c.waitFor(t, left, func(l chatLine) bool { return l.Type == "msg" && want[l.Text] })
		delete(want, l.Text)
	}
}

// waitClosed waits for the connection to end and returns the close frame it got (nil if none).
func (c *chatClient) waitClosed(t testing.TB, timeout time.Duration) *websocket.CloseError {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("chat connection still open after %s", timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.close
}

// open reports whether the connection is still being read.
func (c *chatClient) open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *chatClient) ended() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
