// Package catalog keeps the channels created at run time (through the admin
// API) and their stream keys: in a file of the data directory, or in Redis so
// that every node agrees. A key is kept only as its SHA-256; the key itself is
// handed out once, when it is made.
package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Channel is a channel of the catalog.
type Channel struct {
	Name    string    `json:"name"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Keys    []Key     `json:"keys"`
}

// Key is one stream key of a channel, without the key itself.
type Key struct {
	ID      string    `json:"id"`
	SHA256  string    `json:"sha256"` // hex
	Created time.Time `json:"created"`
}

// Hashes returns the SHA-256 of each of c's keys.
func (c Channel) Hashes() [][32]byte {
	out := make([][32]byte, 0, len(c.Keys))
	for _, k := range c.Keys {
		var h [32]byte
		if b, err := hex.DecodeString(k.SHA256); err == nil && len(b) == len(h) {
			copy(h[:], b)
			out = append(out, h)
		}
	}
	return out
}

// HasKey reports whether secret is one of c's keys.
func (c Channel) HasKey(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return slices.Contains(c.Hashes(), sum)
}

// Store keeps the catalog's channels. FileStore and RedisStore implement it.
type Store interface {
	// List returns every channel, sorted by name.
	List(ctx context.Context) ([]Channel, error)
	// Update changes one channel atomically: fn gets the channel (nil if
	// there is none) and returns what to keep (nil: delete it), or an error
	// that leaves the store as it was and is returned.
	Update(ctx context.Context, name string, fn func(*Channel) (*Channel, error)) error
	// Seed adds c unless the store was seeded before (even if c was deleted
	// since), so that a generated default channel is made once.
	Seed(ctx context.Context, c Channel) error
}

// Errors the Catalog's operations return (wrapped).
var (
	ErrExists      = errors.New("channel already exists")
	ErrNoChannel   = errors.New("no such channel")
	ErrNoKey       = errors.New("no such key")
	ErrLastKey     = errors.New("a channel keeps at least one key: rotate it instead")
	ErrTooManyKeys = errors.New("too many keys")
)

// MaxKeys bounds a channel's keys.
const MaxKeys = 16

// Catalog makes the changes the admin API asks for on a Store.
type Catalog struct {
	Store Store
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

func (c *Catalog) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

// NewKey returns a new random stream key and its catalog entry.
func (c *Catalog) NewKey() (secret string, k Key) {
	var raw [18]byte
	rand.Read(raw[:])
	secret = "sk_" + base64.RawURLEncoding.EncodeToString(raw[:])
	return secret, c.KeyEntry(secret)
}

// KeyEntry returns a new catalog entry for secret (a generated default key, say).
func (c *Catalog) KeyEntry(secret string) Key {
	var id [6]byte
	rand.Read(id[:])
	sum := sha256.Sum256([]byte(secret))
	return Key{ID: "key_" + hex.EncodeToString(id[:]), SHA256: hex.EncodeToString(sum[:]), Created: c.now()}
}

// Create adds a channel with one new key, returned with it.
func (c *Catalog) Create(ctx context.Context, name, title string) (Channel, string, error) {
	secret, key := c.NewKey()
	var made Channel
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		if old != nil {
			return nil, ErrExists
		}
		made = Channel{Name: name, Title: title, Created: c.now(), Keys: []Key{key}}
		return &made, nil
	})
	if err != nil {
		return Channel{}, "", fmt.Errorf("create channel %s: %w", name, err)
	}
	return made, secret, nil
}

// SetTitle changes a channel's title.
func (c *Catalog) SetTitle(ctx context.Context, name, title string) (Channel, error) {
	var out Channel
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		if old == nil {
			return nil, ErrNoChannel
		}
		old.Title = title
		out = *old
		return old, nil
	})
	if err != nil {
		return Channel{}, fmt.Errorf("set title of %s: %w", name, err)
	}
	return out, nil
}

// Delete removes a channel and its keys.
func (c *Catalog) Delete(ctx context.Context, name string) error {
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		if old == nil {
			return nil, ErrNoChannel
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("delete channel %s: %w", name, err)
	}
	return nil
}

// AddKey gives a channel one more key, returned with its entry.
func (c *Catalog) AddKey(ctx context.Context, name string) (Key, string, error) {
	secret, key := c.NewKey()
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		switch {
		case old == nil:
			return nil, ErrNoChannel
		case len(old.Keys) >= MaxKeys:
			return nil, fmt.Errorf("%w: at most %d per channel", ErrTooManyKeys, MaxKeys)
		}
		old.Keys = append(old.Keys, key)
		return old, nil
	})
	if err != nil {
		return Key{}, "", fmt.Errorf("add a key to %s: %w", name, err)
	}
	return key, secret, nil
}

// RotateKey replaces key id of a channel with a new one, returned with its entry.
func (c *Catalog) RotateKey(ctx context.Context, name, id string) (Key, string, error) {
	secret, key := c.NewKey()
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		if old == nil {
			return nil, ErrNoChannel
		}
		i := old.keyIndex(id)
		if i < 0 {
			return nil, ErrNoKey
		}
		old.Keys[i] = key
		return old, nil
	})
	if err != nil {
		return Key{}, "", fmt.Errorf("rotate key %s of %s: %w", id, name, err)
	}
	return key, secret, nil
}

// RevokeKey removes key id of a channel; the last key cannot go.
func (c *Catalog) RevokeKey(ctx context.Context, name, id string) error {
	err := c.Store.Update(ctx, name, func(old *Channel) (*Channel, error) {
		if old == nil {
			return nil, ErrNoChannel
		}
		i := old.keyIndex(id)
		switch {
		case i < 0:
			return nil, ErrNoKey
		case len(old.Keys) == 1:
			return nil, ErrLastKey
		}
		old.Keys = slices.Delete(old.Keys, i, i+1)
		return old, nil
	})
	if err != nil {
		return fmt.Errorf("revoke key %s of %s: %w", id, name, err)
	}
	return nil
}

func (c *Channel) keyIndex(id string) int {
	return slices.IndexFunc(c.Keys, func(k Key) bool { return k.ID == id })
}
