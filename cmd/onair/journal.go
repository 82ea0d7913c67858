package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/moderation"
)

// Redis lists of moderation events and takedowns, newest first.
const (
	journalAll        = "onair:events"  // every channel's
	journalChannel    = "onair:events:" // + channel name
	journalKeepAll    = 10000           // entries kept in journalAll
	journalKeepPerCh  = maxEventsList   // entries kept per channel
	journalRedisLimit = 2 * time.Second // a Redis call's budget
)

// journal keeps moderation events and takedowns in Redis, so that every node
// lists the same events whichever node recorded them; each node also keeps
// its own in the data directory (moderation's history).
type journal struct {
	rdb *redis.Client
}

// add keeps ev; called by moderation for every event it records.
func (j journal) add(ev moderation.Event) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), journalRedisLimit)
	defer cancel()
	_, err = j.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, journalAll, raw)
		p.LTrim(ctx, journalAll, 0, journalKeepAll-1)
		p.LPush(ctx, journalChannel+ev.Channel, raw)
		p.LTrim(ctx, journalChannel+ev.Channel, 0, journalKeepPerCh-1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("keep moderation event in redis: %w", err)
	}
	return nil
}

// recent returns up to limit of the newest events, of one channel or ("") all.
func (j journal) recent(ctx context.Context, channel string, limit int) ([]moderation.Event, error) {
	key := journalAll
	if channel != "" {
		key = journalChannel + channel
	}
	ctx, cancel := context.WithTimeout(ctx, journalRedisLimit)
	defer cancel()
	raws, err := j.rdb.LRange(ctx, key, 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read moderation events from redis: %w", err)
	}
	evs := make([]moderation.Event, 0, len(raws))
	for _, raw := range raws {
		var ev moderation.Event
		if json.Unmarshal([]byte(raw), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs, nil
}
