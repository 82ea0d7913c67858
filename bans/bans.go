// Package bans keeps channel bans (a republish refused until a time) beyond
// the process that set them: in a file of the data directory, so that a
// restart or a deploy does not lift them, or in Redis, shared by every node.
// Both implement ingest.Bans.
package bans

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ban is one channel's ban.
type Ban struct {
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// File keeps bans in a JSON file, rewritten whole (write aside, then
// rename) at every change, read once when opened.
type File struct {
	path string
	now  func() time.Time

	mu   sync.Mutex
	bans map[string]Ban
}

// OpenFile reads the bans kept at path (none if it does not exist yet).
func OpenFile(path string) (*File, error) {
	f := &File{path: path, now: time.Now, bans: map[string]Ban{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("read bans: %w", err)
	}
	if err := json.Unmarshal(data, &f.bans); err != nil {
		return nil, fmt.Errorf("read bans from %s: %w", path, err)
	}
	return f, nil
}

// Ban implements ingest.Bans.
func (f *File) Ban(_ context.Context, channel string, until time.Time, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bans[channel] = Ban{Until: until, Reason: reason}
	return f.saveLocked()
}

// Lift implements ingest.Bans.
func (f *File) Lift(_ context.Context, channel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bans[channel]; !ok {
		return nil
	}
	delete(f.bans, channel)
	return f.saveLocked()
}

// Banned implements ingest.Bans.
func (f *File) Banned(_ context.Context, channel string) (time.Time, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bans[channel]
	if !ok || !f.now().Before(b.Until) {
		return time.Time{}, "", nil
	}
	return b.Until, b.Reason, nil
}

// saveLocked writes the bans still in force. f.mu is held.
func (f *File) saveLocked() error {
	now := f.now()
	for ch, b := range f.bans {
		if !now.Before(b.Until) {
			delete(f.bans, ch)
		}
	}
	data, err := json.MarshalIndent(f.bans, "", "  ")
	if err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("save bans: %w", err)
	}
	return nil
}

// Redis keeps each ban as a key that expires with it:
//
//	onair:ban:CHANNEL   JSON {"until": ..., "reason": ...}
type Redis struct {
	c redis.UniversalClient
}

// NewRedis keeps bans through c.
func NewRedis(c redis.UniversalClient) *Redis { return &Redis{c: c} }

func banKey(channel string) string { return "onair:ban:" + channel }

// Ban implements ingest.Bans.
func (r *Redis) Ban(ctx context.Context, channel string, until time.Time, reason string) error {
	ttl := time.Until(until)
	if ttl <= 0 {
		return nil
	}
	data, err := json.Marshal(Ban{Until: until, Reason: reason})
	if err != nil {
		return err
	}
	if err := r.c.Set(ctx, banKey(channel), data, ttl).Err(); err != nil {
		return fmt.Errorf("save ban of %s in redis: %w", channel, err)
	}
	return nil
}

// Lift implements ingest.Bans.
func (r *Redis) Lift(ctx context.Context, channel string) error {
	if err := r.c.Del(ctx, banKey(channel)).Err(); err != nil {
		return fmt.Errorf("lift ban of %s in redis: %w", channel, err)
	}
	return nil
}

// Banned implements ingest.Bans.
func (r *Redis) Banned(ctx context.Context, channel string) (time.Time, string, error) {
	data, err := r.c.Get(ctx, banKey(channel)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return time.Time{}, "", nil
	case err != nil:
		return time.Time{}, "", fmt.Errorf("read ban of %s from redis: %w", channel, err)
	}
	var b Ban
	if err := json.Unmarshal(data, &b); err != nil {
		return time.Time{}, "", fmt.Errorf("read ban of %s from redis: %w", channel, err)
	}
	if !time.Now().Before(b.Until) {
		return time.Time{}, "", nil
	}
	return b.Until, b.Reason, nil
}
