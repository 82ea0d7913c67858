package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisDB is the database these tests use (other packages' tests use others).
const redisDB = 13

func redisStore(t *testing.T) *RedisStore {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DB: redisDB})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis on 127.0.0.1:6379: %v", err)
	}
	rdb.Del(ctx, redisChannels, redisSeeded)
	return NewRedisStore(rdb)
}

func stores(t *testing.T) map[string]Store {
	return map[string]Store{
		"file":  NewFileStore(filepath.Join(t.TempDir(), "channels.json")),
		"redis": redisStore(t),
	}
}

func TestCatalog(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := &Catalog{Store: st}
			ch, secret, err := c.Create(ctx, "news", "Evening news")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(secret, "sk_") || len(ch.Keys) != 1 || ch.Title != "Evening news" {
				t.Fatalf("created %+v with key %q", ch, secret)
			}
			sum := sha256.Sum256([]byte(secret))
			if ch.Keys[0].SHA256 != hex.EncodeToString(sum[:]) || ch.Hashes()[0] != sum {
				t.Fatalf("key kept as %s, want the key's SHA-256", ch.Keys[0].SHA256)
			}
			if _, _, err := c.Create(ctx, "news", ""); !errors.Is(err, ErrExists) {
				t.Fatalf("second create: %v, want ErrExists", err)
			}
			if ch, err = c.SetTitle(ctx, "news", "Late news"); err != nil || ch.Title != "Late news" {
				t.Fatalf("set title: %+v, %v", ch, err)
			}
			k2, s2, err := c.AddKey(ctx, "news")
			if err != nil || s2 == secret || k2.ID == ch.Keys[0].ID {
				t.Fatalf("add key: %+v %q %v", k2, s2, err)
			}
			k3, s3, err := c.RotateKey(ctx, "news", ch.Keys[0].ID)
			if err != nil || s3 == secret {
				t.Fatalf("rotate: %v", err)
			}
			all, err := st.List(ctx)
			if err != nil || len(all) != 1 || len(all[0].Keys) != 2 || all[0].Keys[0].ID != k3.ID || all[0].Keys[1].ID != k2.ID {
				t.Fatalf("after rotate: %+v, %v", all, err)
			}
			if err := c.RevokeKey(ctx, "news", k2.ID); err != nil {
				t.Fatal(err)
			}
			if err := c.RevokeKey(ctx, "news", k3.ID); !errors.Is(err, ErrLastKey) {
				t.Fatalf("revoking the last key: %v, want ErrLastKey", err)
			}
			for _, tc := range []struct {
				what string
				err  error
				want error
			}{
				{"title of unknown", func() error { _, err := c.SetTitle(ctx, "nope", "x"); return err }(), ErrNoChannel},
				{"add key to unknown", func() error { _, _, err := c.AddKey(ctx, "nope"); return err }(), ErrNoChannel},
				{"rotate unknown key", func() error { _, _, err := c.RotateKey(ctx, "news", "key_0"); return err }(), ErrNoKey},
				{"revoke unknown key", c.RevokeKey(ctx, "news", "key_0"), ErrNoKey},
				{"delete unknown", c.Delete(ctx, "nope"), ErrNoChannel},
			} {
				if !errors.Is(tc.err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
				}
			}
			for range MaxKeys - 1 {
				if _, _, err := c.AddKey(ctx, "news"); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := c.AddKey(ctx, "news"); !errors.Is(err, ErrTooManyKeys) {
				t.Fatalf("key %d: %v, want ErrTooManyKeys", MaxKeys+1, err)
			}
			if err := c.Delete(ctx, "news"); err != nil {
				t.Fatal(err)
			}
			if all, _ := st.List(ctx); len(all) != 0 {
				t.Fatalf("after delete: %+v", all)
			}
		})
	}
}

func TestSeedOnce(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := &Catalog{Store: st}
			main := Channel{Name: "main", Title: "main", Keys: []Key{c.KeyEntry("sk_default")}}
			if fs, ok := st.(*FileStore); ok {
				if seeded, err := fs.Seeded(); seeded || err != nil {
					t.Fatalf("seeded before Seed: %v, %v", seeded, err)
				}
			}
			if err := st.Seed(ctx, main); err != nil {
				t.Fatal(err)
			}
			if fs, ok := st.(*FileStore); ok {
				if seeded, err := fs.Seeded(); !seeded || err != nil {
					t.Fatalf("seeded after Seed: %v, %v", seeded, err)
				}
			}
			if all, _ := st.List(ctx); len(all) != 1 || all[0].Hashes()[0] != sha256.Sum256([]byte("sk_default")) {
				t.Fatalf("seeded: %+v", all)
			}
			if err := c.Delete(ctx, "main"); err != nil {
				t.Fatal(err)
			}
			if err := st.Seed(ctx, main); err != nil {
				t.Fatal(err)
			}
			if all, _ := st.List(ctx); len(all) != 0 {
				t.Fatalf("a deleted default channel came back: %+v", all)
			}
		})
	}
}

// Concurrent changes from several nodes all land (the transaction retries).
func TestRedisConcurrentUpdates(t *testing.T) {
	st := redisStore(t)
	ctx := context.Background()
	c := &Catalog{Store: st}
	if _, _, err := c.Create(ctx, "busy", ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range MaxKeys - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := &Catalog{Store: NewRedisStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DB: redisDB}))}
			if _, _, err := node.AddKey(ctx, "busy"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	all, _ := st.List(ctx)
	if len(all) != 1 || len(all[0].Keys) != MaxKeys {
		t.Fatalf("keys after %d concurrent adds: %d, want %d", MaxKeys-1, len(all[0].Keys), MaxKeys)
	}
}

func TestRedisWatch(t *testing.T) {
	st := redisStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Watch(ctx, func() { changed <- struct{}{} })
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(3 * time.Second):
			t.Fatalf("no change seen after %s", what)
		}
	}
	wait("subscribing") // the first subscription asks for a full read too
	other := &Catalog{Store: NewRedisStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DB: redisDB}))}
	if _, _, err := other.Create(ctx, "seen", ""); err != nil {
		t.Fatal(err)
	}
	wait("another node created a channel")
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}
