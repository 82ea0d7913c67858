package chat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocations keeps the ids of revoked moderator tokens, each until the token would have
// expired anyway, so the list never grows past the tokens still alive. A server checks it
// when a token is presented and before every moderator action.
type Revocations interface {
	// Revoke records id as revoked until until.
	Revoke(ctx context.Context, id string, until time.Time) error
	// Revoked reports whether id is revoked. An error means the answer is unknown.
	Revoked(ctx context.Context, id string) (bool, error)
}

// FileRevocations keeps revocations in memory and, if it has a path, in a file of
// "id expiry-unix-seconds" lines. Revoke appends to the file; Revoked re-reads it when it
// changed, so `onair token revoke` on the same data directory reaches a running server.
type FileRevocations struct {
	path string

	mu      sync.Mutex
	ids     map[string]time.Time
	modTime time.Time
	size    int64
}

// NewFileRevocations returns revocations kept at path ("" keeps them in memory only).
func NewFileRevocations(path string) (*FileRevocations, error) {
	f := &FileRevocations{path: path, ids: make(map[string]time.Time)}
	if path != "" {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.reloadLocked(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// reloadLocked reads the file if it changed since the last read.
func (f *FileRevocations) reloadLocked() error {
	st, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chat: reading revoked tokens: %w", err)
	}
	if st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return nil
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("chat: reading revoked tokens: %w", err)
	}
	f.modTime, f.size = st.ModTime(), st.Size()
	now := time.Now()
	for id, until := range parseRevocations(raw) {
		if until.After(now) {
			f.ids[id] = until
		}
	}
	return nil
}

func parseRevocations(raw []byte) map[string]time.Time {
	out := make(map[string]time.Time)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		id, exp, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		n, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || !validTokenID(id) {
			continue
		}
		if t := time.Unix(n, 0); t.After(out[id]) {
			out[id] = t
		}
	}
	return out
}

// Revoke implements Revocations.
func (f *FileRevocations) Revoke(ctx context.Context, id string, until time.Time) error {
	if !validTokenID(id) {
		return fmt.Errorf("chat: %q is not a moderator token id", id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[id] = until
	if f.path == "" {
		return nil
	}
	// Rewrite without the expired entries; the file never holds more than the live tokens.
	now := time.Now()
	if raw, err := os.ReadFile(f.path); err == nil {
		for k, t := range parseRevocations(raw) {
			if t.After(now) && t.After(f.ids[k]) {
				f.ids[k] = t
			}
		}
	}
	var b bytes.Buffer
	for k, t := range f.ids {
		if t.After(now) {
			fmt.Fprintf(&b, "%s %d\n", k, t.Unix())
		} else {
			delete(f.ids, k)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".revoked-*")
	if err != nil {
		return fmt.Errorf("chat: writing revoked tokens: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("chat: writing revoked tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("chat: writing revoked tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("chat: writing revoked tokens: %w", err)
	}
	return nil
}

// Revoked implements Revocations.
func (f *FileRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path != "" {
		if err := f.reloadLocked(); err != nil {
			return false, err
		}
	}
	until, ok := f.ids[id]
	if ok && !time.Now().Before(until) {
		delete(f.ids, id)
		ok = false
	}
	return ok, nil
}

// RedisRevocations keeps revocations in Redis, shared by every chat node: one key per
// revoked id, expiring with the token (onair:chat:revoked:ID).
type RedisRevocations struct {
	rdb *redis.Client
}

// NewRedisRevocations connects to the Redis at url, for tools that revoke tokens without
// running a chat node. Close it after use.
func NewRedisRevocations(url string) (*RedisRevocations, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("chat: parsing redis url: %w", err)
	}
	return &RedisRevocations{rdb: redis.NewClient(opt)}, nil
}

// Close releases the connection.
func (r *RedisRevocations) Close() error { return r.rdb.Close() }

// Revoke implements Revocations.
func (r *RedisRevocations) Revoke(ctx context.Context, id string, until time.Time) error {
	return redisRevoke(ctx, r.rdb, id, until)
}

// Revoked implements Revocations.
func (r *RedisRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	return redisRevoked(ctx, r.rdb, id)
}

func revokedKey(id string) string { return "onair:chat:revoked:" + id }

func redisRevoke(ctx context.Context, rdb *redis.Client, id string, until time.Time) error {
	if !validTokenID(id) {
		return fmt.Errorf("chat: %q is not a moderator token id", id)
	}
	ttl := time.Until(until)
	if ttl <= 0 {
		return nil // expired tokens are refused anyway
	}
	return wrapf(rdb.Set(ctx, revokedKey(id), "1", ttl).Err(), "chat: revoking moderator token %s", id)
}

func redisRevoked(ctx context.Context, rdb *redis.Client, id string) (bool, error) {
	n, err := rdb.Exists(ctx, revokedKey(id)).Result()
	if err != nil {
		return false, fmt.Errorf("chat: checking revocation of %s: %w", id, err)
	}
	return n > 0, nil
}
