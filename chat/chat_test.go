package chat

import (
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/metricstest"
)

func TestJoinSendHistory(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	a, aid := join(t, n, room, "10.0.0.1", "alice")
	a.write(map[string]any{"type": "send", "text": "hello", "ref": "r1"})
	m := a.next("msg")
	if m["text"] != "hello" || m["ref"] != "r1" || m["seq"].(float64) != 1 {
		t.Fatalf("got %v", m)
	}
	if u := m["user"].(map[string]any); u["id"] != aid || u["name"] != "alice" || u["mod"] != false {
		t.Fatalf("bad sender %v", u)
	}
	b := dial(t, n, room, "10.0.0.2", "")
	w := b.next("welcome")
	hist := w["history"].([]any)
	if len(hist) != 1 || hist[0].(map[string]any)["text"] != "hello" {
		t.Fatalf("history %v", hist)
	}
	// A reader without a name cannot post.
	b.write(map[string]any{"type": "send", "text": "x"})
	if e := b.next("error"); e["code"] != codeNameRequired {
		t.Fatalf("got %v", e)
	}
	// Viewer count reaches 2.
	for {
		if v := a.next("viewers"); v["count"].(float64) == 2 {
			break
		}
	}
	if got := n.srv.ViewerCount(room); got != 2 {
		t.Fatalf("ViewerCount = %d", got)
	}
	// System messages.
	if n.srv.Announce(room, "party", "x", "") == nil || n.srv.Announce("Bad!", SystemLive, "", "") == nil {
		t.Fatal("bad announce accepted")
	}
	if err := n.srv.Announce(room, SystemTakenDown, "", "policy"); err != nil {
		t.Fatal(err)
	}
	s := b.next("system")
	if s["kind"] != "taken_down" || s["reason"] != "policy" || s["seq"].(float64) != 2 {
		t.Fatalf("got %v", s)
	}
	var sb strings.Builder
	metricstest.Write(&sb, n.srv)
	if !strings.Contains(sb.String(), "onair_chat_connections 2") {
		t.Fatalf("metrics:\n%s", sb.String())
	}
}

func TestHistoryBounded(t *testing.T) {
	o := testOptions()
	o.HistoryLen = 3
	n := startNode(t, o)
	room := uniqueRoom(t)
	for i := 0; i < 5; i++ {
		n.srv.Announce(room, SystemNotice, string(rune('a'+i)), "")
	}
	c := dial(t, n, room, "10.0.0.1", "")
	h := c.next("welcome")["history"].([]any)
	if len(h) != 3 || h[0].(map[string]any)["text"] != "c" || h[2].(map[string]any)["text"] != "e" {
		t.Fatalf("history %v", h)
	}
}

func TestModeration(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	mod := dial(t, n, room, "10.0.1.1", "")
	mod.next("welcome")
	mod.write(map[string]any{"type": "join", "name": "mod_ann", "token": SignModeratorToken([]byte("test-secret"), room, time.Hour)})
	if j := mod.next("joined"); j["you"].(map[string]any)["mod"] != true {
		t.Fatalf("got %v", j)
	}
	u, uid := join(t, n, room, "10.0.1.2", "troll")
	u.write(map[string]any{"type": "send", "text": "spam"})
	id := u.next("msg")["id"]
	// A viewer cannot moderate.
	u.write(map[string]any{"type": "delete", "id": id})
	if e := u.next("error"); e["code"] != codeForbidden {
		t.Fatalf("got %v", e)
	}
	mod.write(map[string]any{"type": "delete", "id": id})
	if d := u.next("deleted"); d["id"] != id {
		t.Fatalf("got %v", d)
	}
	if h := dial(t, n, room, "10.0.1.3", "").next("welcome")["history"].([]any); len(h) != 0 {
		t.Fatalf("deleted message still in history: %v", h)
	}
	mod.write(map[string]any{"type": "timeout", "user": uid, "seconds": 60, "reason": "spam"})
	if to := u.next("timeout"); to["user"] != uid || to["seconds"].(float64) != 60 {
		t.Fatalf("got %v", to)
	}
	u.write(map[string]any{"type": "send", "text": "again"})
	if e := u.next("error"); e["code"] != codeTimedOut || e["retry_after_ms"].(float64) < 50000 {
		t.Fatalf("got %v", e)
	}
	// The time-out covers the IP: a new connection from it cannot post either.
	u2, _ := join(t, n, room, "10.0.1.2", "troll2")
	u2.write(map[string]any{"type": "send", "text": "evade"})
	if e := u2.next("error"); e["code"] != codeTimedOut {
		t.Fatalf("got %v", e)
	}
	mod.write(map[string]any{"type": "unban", "user": uid})
	mod.next("unban")
	u.write(map[string]any{"type": "send", "text": "sorry"})
	u.next("msg")
	mod.write(map[string]any{"type": "ban", "user": uid})
	if c := u.closeCode(); c != closeBanned {
		t.Fatalf("close code %d", c)
	}
	if c := u2.closeCode(); c != closeBanned {
		t.Fatalf("same-IP connection close code %d", c)
	}
	again, err := tryDial(n, room, "10.0.1.2", "name=back")
	if err != nil {
		t.Fatal(err)
	}
	again.t = t
	if c := again.closeCode(); c != closeBanned {
		t.Fatalf("reconnect close code %d", c)
	}
}

func TestNamesAndFilter(t *testing.T) {
	o := testOptions()
	o.FilterWords = []string{"darn"}
	n := startNode(t, o)
	room := uniqueRoom(t)
	c := dial(t, n, room, "10.0.2.1", "")
	c.next("welcome")
	for _, name := range []string{"System", "s.y.s.t.e.m", "Moderator", "admin_bob", "", "a\x00b", strings.Repeat("x", 25), "   "} {
		c.write(map[string]any{"type": "join", "name": name})
		if e := c.next("error"); e["code"] != codeBadName && e["code"] != codeReservedName {
			t.Fatalf("name %q: got %v", name, e)
		}
	}
	c.write(map[string]any{"type": "join", "name": "Zoë 2"})
	c.next("joined")
	c.write(map[string]any{"type": "send", "text": "Darn it, class"})
	if m := c.next("msg"); m["text"] != "**** it, class" {
		t.Fatalf("got %v", m)
	}
	c.write(map[string]any{"type": "send", "text": strings.Repeat("é", 501)})
	if e := c.next("error"); e["code"] != codeTooLong {
		t.Fatalf("got %v", e)
	}
	// A 10 KB name in the URL: refused with an error, the connection stays as a reader.
	r := dial(t, n, room, "10.0.2.2", "name="+strings.Repeat("n", 10240))
	if e := r.next("error"); e["code"] != codeBadName {
		t.Fatalf("got %v", e)
	}
	r.write(map[string]any{"type": "send", "text": "x"})
	if e := r.next("error"); e["code"] != codeNameRequired {
		t.Fatalf("got %v", e)
	}
	// A 10 KB name in a join frame is over the read limit: closed with 1009.
	big := dial(t, n, room, "10.0.2.3", "")
	// The write itself may fail: the server stops reading and closes mid-frame.
	big.conn.WriteJSON(map[string]any{"type": "join", "name": strings.Repeat("n", 10240)})
	if code := big.closeCode(); code != 1009 {
		t.Fatalf("close code %d", code)
	}
}

func TestFilterRefuse(t *testing.T) {
	o := testOptions()
	o.FilterWords = []string{"darn"}
	o.FilterMode = FilterRefuse
	n := startNode(t, o)
	c, _ := join(t, n, uniqueRoom(t), "10.0.2.1", "bob")
	c.write(map[string]any{"type": "send", "text": "darn"})
	if e := c.next("error"); e["code"] != codeFiltered {
		t.Fatalf("got %v", e)
	}
}

func TestTokens(t *testing.T) {
	sec := []byte("k")
	tok := SignModeratorToken(sec, "demo", time.Minute)
	if err := VerifyModeratorToken(sec, "demo", tok, time.Now()); err != nil {
		t.Fatal(err)
	}
	if VerifyModeratorToken(sec, "other", tok, time.Now()) == nil {
		t.Fatal("token valid for another channel")
	}
	if VerifyModeratorToken([]byte("x"), "demo", tok, time.Now()) == nil {
		t.Fatal("token valid under another secret")
	}
	if VerifyModeratorToken(sec, "demo", tok, time.Now().Add(2*time.Minute)) == nil {
		t.Fatal("expired token valid")
	}
	forged := strings.Replace(tok, ".", ".", 1)[:len(tok)-2] + "AA"
	if VerifyModeratorToken(sec, "demo", forged, time.Now()) == nil {
		t.Fatal("forged token valid")
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(5, 5*time.Second)
	now := time.Now()
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow(now); !ok {
			t.Fatal("refused within burst")
		}
	}
	ok, wait := l.Allow(now)
	if ok || wait < 900*time.Millisecond || wait > time.Second {
		t.Fatalf("ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.Allow(now.Add(time.Second)); !ok {
		t.Fatal("not refilled after 1s")
	}
}
