package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/onairhq/onair/chat"
)

// chatConn is a chat connection that reads server objects in order.
type chatConn struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialChat(t *testing.T, s *Server, channel string, h http.Header) (*chatConn, int) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.HTTP, "http")+"/chat/"+channel, h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial chat: %v", err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { conn.Close() })
	return &chatConn{t: t, conn: conn}, http.StatusSwitchingProtocols
}

// next returns the next object of type typ (skipping others); on a close it returns
// {"type": "closed", "code": N}.
func (c *chatConn) next(typ string) map[string]any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		if err := c.conn.ReadJSON(&m); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return map[string]any{"type": "closed", "code": ce.Code}
			}
			c.t.Fatalf("waiting for %q: %v", typ, err)
		}
		if m["type"] == typ || m["type"] == "error" && typ != "error" {
			return m
		}
	}
}

// The chat settings as the binary wires them: rooms only for known channels, the origin
// allow-list, trusted proxies, moderator tokens that are not the admin token and that can be
// revoked by the token command.
func TestChatHardeningWired(t *testing.T) {
	const admin, secret = "e2e-chat-admin-token", "e2e-chat-secret-0123"
	s := StartServer(t, "--admin-token", admin, "--secret", secret, "--trusted-proxies", "127.0.0.1",
		"--chat-conns-per-ip", "2", "--public-url", "https://tv.example")

	if _, status := dialChat(t, s, "no-such-channel", nil); status != http.StatusNotFound {
		t.Fatalf("unknown channel: %d", status)
	}
	if _, status := dialChat(t, s, "main", http.Header{"Origin": {"https://evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("foreign origin: %d", status)
	}
	if _, status := dialChat(t, s, "main", http.Header{"Origin": {"https://tv.example"}}); status != http.StatusSwitchingProtocols {
		t.Fatalf("public URL's origin: %d", status)
	}

	// Behind the trusted proxy, the client's own X-Forwarded-For line does not make it someone else.
	spoof := func(fake string) http.Header {
		h := http.Header{}
		h.Add("X-Forwarded-For", fake)
		h.Add("X-Forwarded-For", "203.0.113.7")
		return h
	}
	for i, fake := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		c, _ := dialChat(t, s, "main", spoof(fake))
		m := c.next("welcome")
		if i < 2 && m["type"] != "welcome" || i == 2 && (m["type"] != "closed" || m["code"] != websocket.ClosePolicyViolation) {
			t.Fatalf("connection %d: %v", i, m)
		}
	}

	// The admin token does not moderate chat; a moderator token does, until revoked.
	c, _ := dialChat(t, s, "main", nil)
	c.next("welcome")
	c.conn.WriteJSON(map[string]any{"type": "join", "name": "boss", "token": admin})
	if e := c.next("joined"); e["type"] != "error" || e["code"] != "bad_token" {
		t.Fatalf("admin token as moderator token: %v", e)
	}
	tok := chat.SignModeratorToken([]byte(secret), "main", time.Hour)
	c.conn.WriteJSON(map[string]any{"type": "join", "name": "ann", "token": tok})
	if j := c.next("joined"); j["you"].(map[string]any)["mod"] != true {
		t.Fatalf("moderator join: %v", j)
	}
	c.conn.WriteJSON(map[string]any{"type": "timeout", "user": "u_nobody", "seconds": 5})
	if ev := c.next("timeout"); ev["type"] != "timeout" {
		t.Fatalf("moderator action: %v", ev)
	}
	mt, _ := chat.ParseModeratorToken(tok)
	out, err := exec.Command(onairBin, "token", "revoke", mt.ID, "--data-dir", s.DataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("onair token revoke: %v\n%s", err, out)
	}
	c.conn.WriteJSON(map[string]any{"type": "ban", "user": "u_nobody"})
	if e := c.next("ban"); e["type"] != "error" || e["code"] != "bad_token" || !strings.Contains(e["message"].(string), "revoked") {
		t.Fatalf("action with a revoked token: %v", e)
	}
}
