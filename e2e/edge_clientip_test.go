package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// refusal describes how a chat connection attempt was refused: an HTTP status
// before the upgrade, or a close frame right after it ("" if it was admitted).
func refusal(t *testing.T, base, from string, header http.Header) string {
	t.Helper()
	c, resp, err := openChat(base, "main", "again", from, header)
	if err != nil {
		if resp != nil {
			return fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		t.Fatalf("chat dial from %s: %v", from, err)
	}
	defer c.ws.Close()
	select {
	case <-c.done:
		var ce *websocket.CloseError
		if errors.As(c.ended(), &ce) {
			return fmt.Sprintf("close %d", ce.Code)
		}
		return c.ended().Error()
	case <-time.After(time.Second):
		return ""
	}
}

// moderatorToken asks the binary for a moderator token of channel main signed
// with ONAIR_SECRET (from the environment, like the server's).
func moderatorToken(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(onairBin, "token", "moderator", "--channel", "main").Output()
	if err != nil {
		t.Fatalf("onair token moderator: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestEdgePassesClientAddress runs deploy/'s nginx edge in front of onair set
// up as the compose stack sets it (the edge in trusted-proxies): viewers who
// reach the edge from different addresses are different IPs to onair. Their
// connections are counted per address, and banning one leaves the other, and
// new viewers, able to connect; a viewer who writes their own X-Forwarded-For
// does not escape the ban.
func TestEdgePassesClientAddress(t *testing.T) {
	needTools(t, "nginx")
	t.Setenv("ONAIR_SECRET", "edge-test-secret-0123456789")
	t.Setenv("ONAIR_TRUSTED_PROXIES", "127.0.0.1/32") // the edge's address, as in deploy/docker-compose.yml
	srv := StartServer(t, "--chat-conns-per-ip", "2")
	edge := startEdge(t, strings.TrimPrefix(srv.HTTP, "http://"))
	WaitHTTP(t, edge+"/healthz", 10*time.Second)

	const alice, bob, mod = "127.0.0.2", "127.0.0.3", "127.0.0.4"
	a1 := mustOpenChat(t, edge, "main", "alice", alice)
	mustOpenChat(t, edge, "main", "alice2", alice)
	if r := refusal(t, edge, alice, nil); r == "" {
		t.Fatal("a third connection from one viewer's address was admitted past chat-conns-per-ip 2")
	}
	b1 := mustOpenChat(t, edge, "main", "bob", bob)
	mustOpenChat(t, edge, "main", "bob2", bob)

	m := mustOpenChat(t, edge, "main", "", mod)
	m.send(t, map[string]string{"type": "join", "name": "mod", "token": moderatorToken(t)})
	m.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "joined" })
	a1.say(t, "hello from alice")
	msg := m.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "hello from alice" })
	m.send(t, map[string]string{"type": "ban", "user": msg.userID(), "reason": "test"})
	if ce := a1.waitClosed(t, 5*time.Second); ce == nil || ce.Code != 4003 {
		t.Fatalf("banned alice got %v, want close 4003", ce)
	}

	// Alice's address stays banned, also when she claims another one.
	for _, h := range []http.Header{nil, {"X-Forwarded-For": {"127.0.0.9"}, "X-Real-IP": {"127.0.0.9"}}} {
		if r := refusal(t, edge, alice, h); r != "close 4003" && r != "HTTP 403" {
			t.Errorf("alice reconnecting (headers %v): %q, want the ban", h, r)
		}
	}
	// Bob, and viewers from other addresses, are not affected.
	if !b1.open() {
		t.Fatalf("bob was disconnected by alice's ban: %v", b1.ended())
	}
	b1.say(t, "bob still here")
	m.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "bob still here" })
	mustOpenChat(t, edge, "main", "carol", "127.0.0.5")
}
