package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"
)

// Redis keys of the catalog.
const (
	redisChannels = "onair:channels"         // hash: name → Channel as JSON
	redisSeeded   = "onair:channels:seeded"  // set once the default channel was seeded
	redisChanged  = "onair:channels:changed" // pub/sub: a channel's name after each change
)

// RedisStore keeps the catalog in Redis, where every node reads the same
// channels; a change is announced so that every node applies it at once (Watch).
type RedisStore struct {
	rdb *redis.Client
}

// NewRedisStore returns a store in rdb.
func NewRedisStore(rdb *redis.Client) *RedisStore { return &RedisStore{rdb: rdb} }

// List implements Store.
func (s *RedisStore) List(ctx context.Context) ([]Channel, error) {
	all, err := s.rdb.HGetAll(ctx, redisChannels).Result()
	if err != nil {
		return nil, fmt.Errorf("read channels from redis: %w", err)
	}
	out := make([]Channel, 0, len(all))
	for name, raw := range all {
		var c Channel
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, fmt.Errorf("read channel %s from redis: %w", name, err)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Update implements Store: an optimistic transaction on the catalog,
// retried when another node changed it in between.
func (s *RedisStore) Update(ctx context.Context, name string, fn func(*Channel) (*Channel, error)) error {
	txf := func(tx *redis.Tx) error {
		raw, err := tx.HGet(ctx, redisChannels, name).Result()
		var old *Channel
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return err
		default:
			old = new(Channel)
			if err := json.Unmarshal([]byte(raw), old); err != nil {
				return fmt.Errorf("read channel %s from redis: %w", name, err)
			}
		}
		neu, err := fn(old)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if neu == nil {
				p.HDel(ctx, redisChannels, name)
			} else {
				b, _ := json.Marshal(neu)
				p.HSet(ctx, redisChannels, name, b)
			}
			p.Publish(ctx, redisChanged, name)
			return nil
		})
		return err
	}
	for range 20 {
		err := s.rdb.Watch(ctx, txf, redisChannels)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return err
	}
	return errors.New("channel catalog busy: try again")
}

// Seed implements Store.
func (s *RedisStore) Seed(ctx context.Context, c Channel) error {
	first, err := s.rdb.SetNX(ctx, redisSeeded, 1, 0).Result()
	if err != nil || !first {
		return err
	}
	b, _ := json.Marshal(c)
	if err := s.rdb.HSetNX(ctx, redisChannels, c.Name, b).Err(); err != nil {
		return err
	}
	return s.rdb.Publish(ctx, redisChanged, c.Name).Err()
}

// Watch calls changed after every change any node makes, and each time the
// subscription is made again after Redis was unreachable (changes may have
// been missed meanwhile), until ctx is done.
func (s *RedisStore) Watch(ctx context.Context, changed func()) {
	ps := s.rdb.Subscribe(ctx, redisChanged)
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m.(type) {
			case *redis.Message, *redis.Subscription:
				changed()
			}
		}
	}
}
