package chat

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A revoked token stops moderating at the next action and cannot join again; the file the
// token command writes reaches a running server.
func TestModeratorTokenRevokedThroughFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked-tokens")
	server, err := NewFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Revocations = server
	n := startNode(t, o)
	room := uniqueRoom(t)
	tok := SignModeratorToken(o.Secret, room, time.Hour)
	mt, err := ParseModeratorToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	mod := dial(t, n, room, "10.60.0.1", "")
	mod.next("welcome")
	mod.write(map[string]any{"type": "join", "name": "ann", "token": tok})
	mod.next("joined")
	_, uid := join(t, n, room, "10.60.0.2", "bob")
	mod.write(map[string]any{"type": "timeout", "user": uid, "seconds": 5})
	mod.next("timeout")

	// Revoked by another process writing the file (as `onair token revoke` does).
	tool, err := NewFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tool.Revoke(context.Background(), mt.ID, mt.Expires); err != nil {
		t.Fatal(err)
	}
	mod.write(map[string]any{"type": "ban", "user": uid, "ref": "b"})
	if e := mod.next("error"); e["code"] != codeBadToken || !strings.Contains(e["message"].(string), "revoked") || e["ref"] != "b" {
		t.Fatalf("got %v", e)
	}
	mod.write(map[string]any{"type": "delete", "id": "m_x"})
	if e := mod.next("error"); e["code"] != codeForbidden {
		t.Fatalf("after demotion: %v", e)
	}
	mod.write(map[string]any{"type": "join", "name": "ann", "token": tok})
	if e := mod.next("error"); e["code"] != codeBadToken {
		t.Fatalf("rejoin with a revoked token: %v", e)
	}
	// Another token for the same channel still works.
	modJoin(t, n, room, "10.60.0.3", "cat")
	// A restarted server reads the revocation back.
	again, err := NewFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := again.Revoked(context.Background(), mt.ID); err != nil || !r {
		t.Fatalf("revocation lost across a restart: %v %v", r, err)
	}
}

// A token stops working when it expires, even on a connection that joined with it.
func TestModeratorTokenExpiresWhileConnected(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	tok := SignModeratorToken([]byte("test-secret"), room, 2500*time.Millisecond) // expiry has 1 s steps
	mt, _ := ParseModeratorToken(tok)
	mod := dial(t, n, room, "10.61.0.1", "")
	mod.next("welcome")
	mod.write(map[string]any{"type": "join", "name": "ann", "token": tok})
	mod.next("joined")
	_, uid := join(t, n, room, "10.61.0.2", "bob")
	time.Sleep(time.Until(mt.Expires) + 50*time.Millisecond)
	mod.write(map[string]any{"type": "ban", "user": uid})
	if e := mod.next("error"); e["code"] != codeBadToken || !strings.Contains(e["message"].(string), "expired") {
		t.Fatalf("got %v", e)
	}
	// Tokens are capped in lifetime.
	long, _ := ParseModeratorToken(SignModeratorToken([]byte("k"), "x", 10*365*24*time.Hour))
	if d := time.Until(long.Expires); d > MaxModeratorTokenTTL {
		t.Fatalf("a token valid for %v", d)
	}
}

// With Redis, a revocation reaches every node.
func TestModeratorTokenRevokedInRedis(t *testing.T) {
	o := testOptions()
	a, b, _, _ := twoNodes(t, testRedisURL, o)
	room := uniqueRoom(t)
	tok := SignModeratorToken(o.Secret, room, time.Hour)
	mt, _ := ParseModeratorToken(tok)
	mod := dial(t, b, room, "10.62.0.1", "")
	mod.next("welcome")
	mod.write(map[string]any{"type": "join", "name": "ann", "token": tok})
	mod.next("joined")
	_, uid := join(t, a, room, "10.62.0.2", "bob")

	tool, err := NewRedisRevocations(testRedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	if err := tool.Revoke(context.Background(), mt.ID, mt.Expires); err != nil {
		t.Fatal(err)
	}
	mod.write(map[string]any{"type": "ban", "user": uid})
	if e := mod.next("error"); e["code"] != codeBadToken {
		t.Fatalf("got %v", e)
	}
	fresh := dial(t, a, room, "10.62.0.3", "")
	fresh.next("welcome")
	fresh.write(map[string]any{"type": "join", "name": "ann", "token": tok})
	if e := fresh.next("error"); e["code"] != codeBadToken {
		t.Fatalf("the other node accepted a revoked token: %v", e)
	}
}

func TestTokenFormat(t *testing.T) {
	sec := []byte("k")
	tok := SignModeratorToken(sec, "demo", time.Hour)
	mt, err := ParseModeratorToken(tok)
	if err != nil || mt.Channel != "demo" || !validTokenID(mt.ID) || time.Until(mt.Expires) > time.Hour {
		t.Fatalf("%q: %+v %v", tok, mt, err)
	}
	if other, _ := ParseModeratorToken(SignModeratorToken(sec, "demo", time.Hour)); other.ID == mt.ID {
		t.Fatal("two tokens share an id")
	}
	// No id starts with "-" (the revoke command would read it as a flag; one in
	// 64 did, and CI once failed so): 2,000 ids would show one with near certainty.
	for range 2000 {
		if m, _ := ParseModeratorToken(SignModeratorToken(sec, "demo", time.Hour)); strings.HasPrefix(m.ID, "-") {
			t.Fatalf("token id %q starts with -", m.ID)
		}
	}
	// Changing the id breaks the signature.
	parts := strings.Split(tok, ".")
	parts[3] = "AAAAAAAAAAAAAAAA"
	if VerifyModeratorToken(sec, "demo", strings.Join(parts, "."), time.Now()) == nil {
		t.Fatal("a token with a changed id verified")
	}
	for _, bad := range []string{"", "v2", "v2.demo.1.AAAAAAAAAAAAAAAA", "v2.demo.-5.AAAAAAAAAAAAAAAA.x", "v2.demo.9.short.x", strings.Repeat("v2.", 200)} {
		if _, err := ParseModeratorToken(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// A time-out's length is checked before it becomes a duration: a huge count used to overflow
// into an arbitrary time-out (found by FuzzClientFrame).
func TestTimeoutSecondsChecked(t *testing.T) {
	n := startNode(t, testOptions())
	room := uniqueRoom(t)
	mod, _ := modJoin(t, n, room, "10.63.0.1", "ann")
	_, uid := join(t, n, room, "10.63.0.2", "bob")
	for _, secs := range []int64{-1, 604801, 1 << 62, 9223372036854775807} {
		mod.write(map[string]any{"type": "timeout", "user": uid, "seconds": secs})
		if e := mod.next("error"); e["code"] != codeBadRequest {
			t.Fatalf("seconds %d: %v", secs, e)
		}
	}
	for secs, want := range map[int64]float64{0: 600, 604800: 604800} {
		mod.write(map[string]any{"type": "timeout", "user": uid, "seconds": secs})
		if ev := mod.next("timeout"); ev["seconds"] != want {
			t.Fatalf("seconds %d: %v", secs, ev)
		}
	}
}

// CheckModerator answers as joining does: good, forged, for another channel, expired, revoked.
func TestCheckModerator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked-tokens")
	rev, err := NewFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Revocations = rev
	n := startNode(t, o)
	good := SignModeratorToken(o.Secret, "main", time.Hour)
	if err := n.srv.CheckModerator("main", good); err != nil {
		t.Fatalf("good token: %v", err)
	}
	revoked := SignModeratorToken(o.Secret, "main", time.Hour)
	mt, _ := ParseModeratorToken(revoked)
	if err := rev.Revoke(context.Background(), mt.ID, mt.Expires); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"forged":          SignModeratorToken([]byte("another-secret"), "main", time.Hour),
		"another channel": SignModeratorToken(o.Secret, "other", time.Hour),
		"expired":         SignModeratorToken(o.Secret, "main", -time.Second),
		"revoked":         revoked,
		"garbage":         "not-a-token",
	} {
		if err := n.srv.CheckModerator("main", tok); err == nil || errors.Is(err, ErrModeratorCheckUnavailable) {
			t.Errorf("%s token: %v, want refused", name, err)
		}
	}
}
