// Package registry shares which node holds each live channel among onair
// nodes, through Redis. An ingest node claims a channel when its publisher
// arrives, keeps the claim alive with a heartbeat while the broadcast lasts
// and releases it when the broadcast ends; a node that dies stops beating and
// loses its channels after the TTL. Origin nodes look up the holder to fetch
// its HLS, and every node lists all nodes' channels from here.
//
// A claim is one Redis key per channel holding a Record, written only by
// scripts that compare the holder first, so two nodes never both believe they
// hold a channel for longer than one heartbeat.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/ingest"
)

// Record is what the registry keeps of one live channel.
type Record struct {
	Channel string `json:"channel"`
	// Node identifies the holding process; Addr is the base URL of its HTTP.
	Node string `json:"node"`
	Addr string `json:"addr"`
	// Publishing is false while the holder's publisher is gone and the
	// broadcast waits out its reconnect grace: another node may claim it then.
	Publishing bool `json:"publishing"`
	// Status is the channel's public state on the holder (ingest.ChannelStatus).
	Status json.RawMessage `json:"status,omitempty"`
	// Position is where the channel's playlist goes on, for a node taking it over.
	Position Position  `json:"position"`
	Updated  time.Time `json:"updated"`
}

// Position is where a channel's playlist continues on another node: the
// media sequence after its last complete segment, and the next
// discontinuity sequence.
type Position struct {
	MSN  uint64 `json:"msn"`
	Disc uint64 `json:"disc"`
}

// Options configure a Registry.
type Options struct {
	// Node identifies this process among the nodes; Addr is the base URL
	// other nodes reach its HTTP at.
	Node, Addr string
	// TTL is how long a claim outlives its last heartbeat (default 5 s).
	// Heartbeats come every fifth of it.
	TTL time.Duration
	// Grace is how long a channel's playlist position is kept after its
	// last heartbeat, for a publisher reconnecting to another node.
	Grace time.Duration
	// Held returns the channels this node holds now, with their state;
	// called at every heartbeat. Node, Addr and Updated are filled in.
	Held func() []Record
	// Lost is told of a channel this node held that another node claimed
	// (a takeover, or the publisher moved there during the grace).
	Lost func(channel string, holder Record)
	// Resume is told, when this node claims a channel, where its playlist
	// went on elsewhere (another node held it within the grace).
	Resume func(channel string, pos Position)
	Logger *slog.Logger
}

// DefaultTTL is Options.TTL's default.
const DefaultTTL = 5 * time.Second

// Registry keeps this node's claims in Redis and reads everyone's.
type Registry struct {
	rdb  redis.UniversalClient
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	down    bool      // the last call to Redis failed (logged once per outage)
	checked time.Time // when the last call was made
}

var _ ingest.Claims = (*Registry)(nil)

const (
	keyPrefix   = "onair:live:"     // + channel: the holder's Record, expiring with the TTL
	indexKey    = "onair:live"      // sorted set: channel → expiry (ms), for listing
	resumePrefx = "onair:resume:"   // + channel: its Position, kept for the grace
	endedPrefix = "onair:ended:"    // + channel: its last holder's ending, until claimed again
	takedowns   = "onair:takedowns" // pub/sub: names of channels taken down
)

// ErrEnded is what Lookup returns for a channel whose holder took its
// broadcast down: origins serve nothing more of it, not even what they kept.
var ErrEnded = errors.New("the channel's broadcast ended")

// New returns a Registry using rdb.
func New(rdb redis.UniversalClient, opts Options) *Registry {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Registry{rdb: rdb, opts: opts, log: opts.Logger}
}

// claimScript claims KEYS[1] for ARGV[1] unless another node holds it with
// its publisher connected (ARGV[4] = "1": take it anyway). It returns
// {1, previous record or false, resume position or false} or {0, holder}.
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and ARGV[4] ~= '1' then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and rec.node ~= ARGV[1] and rec.publishing then
    return {0, cur}
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[3]), ARGV[6])
redis.call('DEL', KEYS[4])
return {1, cur or false, redis.call('GET', KEYS[3]) or false}
`)

// beatScript refreshes a claim of ARGV[1]'s and the channel's position. It
// returns false when done, or the record of the node that holds it now.
var beatScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and rec.node ~= ARGV[1] then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[3]), ARGV[5])
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
return false
`)

// releaseScript drops ARGV[1]'s claim, if it still is ARGV[1]'s, and keeps
// how it ended (ARGV[4]) for ARGV[3] ms.
var releaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and rec.node ~= ARGV[1] then
    return 0
  end
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
if ARGV[5] == '1' then
  redis.call('PUBLISH', KEYS[4], ARGV[2])
end
return 1
`)

// Claim implements ingest.Claims: it makes this node the holder of channel.
func (r *Registry) Claim(ctx context.Context, channel string, takeover bool) error {
	rec := r.stamp(Record{Channel: channel, Publishing: true})
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	now := time.Now()
	res, err := claimScript.Run(ctx, r.rdb, []string{keyPrefix + channel, indexKey, resumePrefx + channel, endedPrefix + channel},
		r.opts.Node, raw, r.opts.TTL.Milliseconds(), flag(takeover), now.UnixMilli(), channel).Slice()
	if err = r.seen(err); err != nil {
		return fmt.Errorf("claim channel %s in the registry: %w", channel, err)
	}
	if len(res) < 2 {
		return fmt.Errorf("claim channel %s in the registry: unexpected answer %v", channel, res)
	}
	if n, _ := res[0].(int64); n == 0 {
		var holder Record
		s, _ := res[1].(string)
		_ = json.Unmarshal([]byte(s), &holder)
		return fmt.Errorf("channel %s: %w (node %s)", channel, ingest.ErrClaimed, holder.Node)
	}
	var prev Record
	if s, ok := res[1].(string); ok {
		_ = json.Unmarshal([]byte(s), &prev)
	}
	if prev.Node != "" && prev.Node != r.opts.Node {
		r.log.Info("channel claimed from another node", "channel", channel, "from", prev.Node, "publishing_there", prev.Publishing)
	}
	if len(res) > 2 && r.opts.Resume != nil {
		if s, ok := res[2].(string); ok {
			var pos Position
			if json.Unmarshal([]byte(s), &pos) == nil {
				r.opts.Resume(channel, pos)
			}
		}
	}
	return nil
}

// ending is what the registry keeps of a channel's last holder once it
// released the channel: where its ended playlist is still served, or that
// the broadcast was taken down.
type ending struct {
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	TakenDown bool   `json:"taken_down,omitempty"`
}

// Release gives up this node's claim on channel because its broadcast ended.
// Until a node claims the channel again (at most for the grace), Lookup
// points at this node, which serves the ended playlist, or says ErrEnded if
// the broadcast was taken down. The playlist position stays too.
func (r *Registry) Release(ctx context.Context, channel string, takenDown bool) error {
	keep := (r.opts.TTL + r.opts.Grace).Milliseconds()
	end, _ := json.Marshal(ending{Node: r.opts.Node, Addr: r.opts.Addr, TakenDown: takenDown})
	err := releaseScript.Run(ctx, r.rdb, []string{keyPrefix + channel, indexKey, endedPrefix + channel, takedowns},
		r.opts.Node, channel, keep, end, flag(takenDown)).Err()
	if err = r.seen(err); err != nil {
		return fmt.Errorf("release channel %s in the registry: %w", channel, err)
	}
	return nil
}

// Run beats every TTL/5 until ctx is done: it refreshes the claims of every
// channel Options.Held returns and reports the ones another node took.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.TTL / 5)
	defer t.Stop()
	for {
		r.beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Registry) beat(ctx context.Context) {
	if r.opts.Held == nil {
		return
	}
	held := r.opts.Held()
	if len(held) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.TTL/5)
	defer cancel()
	now := time.Now()
	keep := (r.opts.TTL + r.opts.Grace).Milliseconds()
	// One round trip for every channel: a node holds hundreds.
	if err := r.seen(beatScript.Load(ctx, r.rdb).Err()); err != nil {
		return
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, 0, len(held))
	for _, rec := range held {
		rec = r.stamp(rec)
		raw, err := json.Marshal(rec)
		if err != nil {
			continue
		}
		pos, _ := json.Marshal(rec.Position)
		cmds = append(cmds, beatScript.EvalSha(ctx, pipe, []string{keyPrefix + rec.Channel, indexKey, resumePrefx + rec.Channel},
			r.opts.Node, raw, r.opts.TTL.Milliseconds(), now.UnixMilli(), rec.Channel, pos, keep))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) { // nil: a script's false
		r.seen(err)
		return
	}
	r.seen(nil)
	for _, cmd := range cmds {
		s, ok := cmd.Val().(string)
		if !ok || r.opts.Lost == nil {
			continue
		}
		var holder Record
		_ = json.Unmarshal([]byte(s), &holder)
		channel := cmd.Args()[3].(string) // EVALSHA sha numkeys key1: the channel's key
		channel = channel[len(keyPrefix):]
		r.log.Info("channel is published on another node now", "channel", channel, "node", holder.Node)
		r.opts.Lost(channel, holder)
	}
}

// Lookup returns the record of the node holding channel: live, or just
// ended there (Publishing false, no Status; its ended playlist is served
// there for a while). A channel no node holds is not found (ok false), and
// one taken down is ErrEnded.
func (r *Registry) Lookup(ctx context.Context, channel string) (Record, bool, error) {
	s, err := r.rdb.Get(ctx, keyPrefix+channel).Result()
	if errors.Is(err, redis.Nil) {
		return r.ended(ctx, channel)
	}
	if err = r.seen(err); err != nil {
		return Record{}, false, fmt.Errorf("look up channel %s in the registry: %w", channel, err)
	}
	var rec Record
	if err := json.Unmarshal([]byte(s), &rec); err != nil {
		return Record{}, false, fmt.Errorf("look up channel %s in the registry: %w", channel, err)
	}
	return rec, true, nil
}

// WatchTakedowns calls taken with the name of every channel a node takes
// down from now until ctx is done, so that origins drop what they kept of it
// at once. Messages sent while Redis is unreachable are lost; Lookup still
// says ErrEnded for them.
func (r *Registry) WatchTakedowns(ctx context.Context, taken func(channel string)) {
	sub := r.rdb.Subscribe(ctx, takedowns)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			taken(m.Payload)
		}
	}
}

// ended looks up how channel's last holder ended it.
func (r *Registry) ended(ctx context.Context, channel string) (Record, bool, error) {
	s, err := r.rdb.Get(ctx, endedPrefix+channel).Result()
	if errors.Is(err, redis.Nil) {
		return Record{}, false, r.seen(nil)
	}
	if err = r.seen(err); err != nil {
		return Record{}, false, fmt.Errorf("look up channel %s in the registry: %w", channel, err)
	}
	var end ending
	if json.Unmarshal([]byte(s), &end) != nil || end.Node == "" {
		return Record{}, false, nil
	}
	if end.TakenDown {
		return Record{}, false, fmt.Errorf("channel %s: %w", channel, ErrEnded)
	}
	return Record{Channel: channel, Node: end.Node, Addr: end.Addr}, true, nil
}

// Live returns the records of every live channel, on every node.
func (r *Registry) Live(ctx context.Context) ([]Record, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if err := r.rdb.ZRemRangeByScore(ctx, indexKey, "-inf", "("+now).Err(); r.seen(err) != nil {
		return nil, fmt.Errorf("list live channels in the registry: %w", err)
	}
	names, err := r.rdb.ZRange(ctx, indexKey, 0, -1).Result()
	if err = r.seen(err); err != nil || len(names) == 0 {
		return nil, err
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = keyPrefix + n
	}
	vals, err := r.rdb.MGet(ctx, keys...).Result()
	if err = r.seen(err); err != nil {
		return nil, fmt.Errorf("list live channels in the registry: %w", err)
	}
	out := make([]Record, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired since the index was read
		}
		var rec Record
		if json.Unmarshal([]byte(s), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Down reports whether the last call to Redis failed.
func (r *Registry) Down() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down
}

// Healthy returns an error while Redis cannot be reached: the last call
// failed, or, when none was made for a second, a ping does.
func (r *Registry) Healthy() error {
	r.mu.Lock()
	stale := time.Since(r.checked) > time.Second
	r.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		r.seen(r.rdb.Ping(ctx).Err())
		cancel()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("the registry (Redis) is unreachable")
	}
	return nil
}

// Node returns this node's identity.
func (r *Registry) Node() string { return r.opts.Node }

func (r *Registry) stamp(rec Record) Record {
	rec.Node, rec.Addr, rec.Updated = r.opts.Node, r.opts.Addr, time.Now().UTC()
	return rec
}

// seen logs the start and end of a Redis outage once each and returns err.
func (r *Registry) seen(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = time.Now()
	switch {
	case err != nil && !r.down:
		r.down = true
		r.log.Warn("registry unreachable: channels held here stay live, other nodes' channels are unknown", "err", err)
	case err == nil && r.down:
		r.down = false
		r.log.Info("registry reachable again")
	}
	return err
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
