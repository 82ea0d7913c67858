package bans

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/ingest"
)

var (
	_ ingest.Bans = (*File)(nil)
	_ ingest.Bans = (*Redis)(nil)
)

// testBans runs the behaviour both stores share; reopen returns a store
// reading what the first one kept (a restart, or another node).
func testBans(t *testing.T, store ingest.Bans, reopen func() ingest.Bans) {
	ctx := context.Background()
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := store.Ban(ctx, "alice", until, "spam"); err != nil {
		t.Fatal(err)
	}
	if err := store.Ban(ctx, "brief", time.Now().Add(300*time.Millisecond), "short"); err != nil {
		t.Fatal(err)
	}
	other := reopen()
	got, reason, err := other.Banned(ctx, "alice")
	if err != nil || !got.Equal(until) || reason != "spam" {
		t.Errorf("Banned after reopening = %v %q %v, want %v spam", got, reason, err, until)
	}
	if got, _, _ := other.Banned(ctx, "bob"); !got.IsZero() {
		t.Errorf("bob banned until %v, never banned", got)
	}
	time.Sleep(400 * time.Millisecond)
	if got, _, _ := reopen().Banned(ctx, "brief"); !got.IsZero() {
		t.Errorf("an expired ban still holds until %v", got)
	}
	if err := other.Lift(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := reopen().Banned(ctx, "alice"); !got.IsZero() {
		t.Errorf("a lifted ban still holds until %v", got)
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "bans.json")
	open := func() ingest.Bans {
		f, err := OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	testBans(t, open(), open)
}

func TestRedis(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Skipf("no Redis on 127.0.0.1:6379 (scripts/test starts one): %v", err)
	}
	for _, ch := range []string{"alice", "brief", "bob"} {
		c.Del(context.Background(), banKey(ch))
	}
	r := NewRedis(c)
	testBans(t, r, func() ingest.Bans { return NewRedis(c) })
	if ttl := c.TTL(context.Background(), banKey("alice")).Val(); ttl > 0 {
		t.Errorf("a lifted ban's key is still there (ttl %v)", ttl)
	}
}

func TestRedisDown(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	r := NewRedis(c)
	if _, _, err := r.Banned(context.Background(), "alice"); err == nil {
		t.Error("Banned with Redis unreachable: no error")
	}
}
