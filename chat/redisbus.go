package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBus is a Bus shared by chat nodes through one Redis: pub/sub carries events, and
// Redis keeps each room's sequence, history, restrictions and presence.
//
// Keys (the {room} hash tag keeps a room's keys in one Redis Cluster slot):
//
//	onair:chat:{room}:seq        sequence counter      onair:chat:{room}:epoch  sequence epoch
//	onair:chat:{room}:hist       capped history list   onair:chat:{room}:pres   node → "count expiry_ms"
//	onair:chat:{room}:r:u:{uid}  restriction of a user onair:chat:{room}:r:i:{ip} restriction of an IP tag
//	onair:chat:revoked:ID        a revoked moderator token (ID: its id), until it would have expired
//	channel onair:chat:{room}    events, "epoch seq payload"
//
// seq, epoch and hist expire RoomTTL after the room's last event or the last presence report
// of a node with viewers in it; pres expires with its nodes' shares; a time-out's keys with
// the time-out. Only bans are kept until lifted.
type RedisBus struct {
	rdb         *redis.Client
	node        string
	log         *slog.Logger
	presenceTTL time.Duration
	roomTTL     time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ps     *redis.PubSub
	up     atomic.Bool

	mu     sync.Mutex
	subs   map[string]map[int]func(Event) // room → subscribers on this node
	nextID int

	chanMu sync.Mutex      // serializes pub/sub (un)subscribe calls
	active map[string]bool // rooms whose channel is subscribed; guarded by chanMu
}

// Lua scripts: each runs atomically, so the sequence order is the publish order.
var (
	publishScript = redis.NewScript(`
if ARGV[5] == '1' then
  for i = 4, 5 do
    local v = redis.call('GET', KEYS[i])
    if v then return {-1, redis.call('PTTL', KEYS[i]), string.sub(v, 1, 1)} end
  end
end
local seq = 0
local epoch = redis.call('GET', KEYS[2])
if ARGV[2] == '1' then
  seq = redis.call('INCR', KEYS[1])
  if seq == 1 or not epoch then
    local t = redis.call('TIME')
    epoch = t[1] .. t[2]
    redis.call('SET', KEYS[2], epoch)
  end
  redis.call('RPUSH', KEYS[3], epoch .. ' ' .. seq .. ' ' .. ARGV[1])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
if ARGV[6] ~= '' then
  for _, it in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    if string.find(it, ARGV[6], 1, true) then
      redis.call('LREM', KEYS[3], 1, it)
      break
    end
  end
end
redis.call('PUBLISH', ARGV[4], (epoch or '0') .. ' ' .. seq .. ' ' .. ARGV[1])
return {seq}
`)
	presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], n .. ' ' .. (now + tonumber(ARGV[3])))
elseif n == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local sum = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '(%d+) (%d+)')
  if c and tonumber(exp) > now then
    sum = sum + tonumber(c)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
end
return sum
`)
)

// RedisOptions tunes a RedisBus; zero fields take defaults.
type RedisOptions struct {
	PresenceTTL time.Duration // a node's viewer share expires this long after its last report (10s)
	RoomTTL     time.Duration // a room's sequence and history expire this long after it was last used (10m)
}

// NewRedisBus connects to the Redis at url (redis://[:password@]host:port/db) as node nodeID
// (unique per chat node; used for presence). It fails only on a malformed url: while Redis
// cannot be reached, now or later, local delivery continues, Ready reports the outage, and
// the bus reconnects with backoff.
func NewRedisBus(ctx context.Context, url, nodeID string, log *slog.Logger, ro RedisOptions) (*RedisBus, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("chat: parsing redis url: %w", err)
	}
	// Fail fast while Redis is away so senders fall back to local delivery quickly.
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.PoolTimeout = time.Second
	opt.MaxRetries = 1
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ro.PresenceTTL <= 0 {
		ro.PresenceTTL = 10 * time.Second
	}
	if ro.RoomTTL <= 0 {
		ro.RoomTTL = DefaultOptions().RoomTTL
	}
	b := &RedisBus{
		rdb: redis.NewClient(opt), node: nodeID, log: log, presenceTTL: ro.PresenceTTL, roomTTL: ro.RoomTTL,
		subs: make(map[string]map[int]func(Event)), active: make(map[string]bool),
	}
	// A node that starts during a Redis outage serves its local viewers and joins
	// the others once Redis answers, as after an outage that began later.
	b.up.Store(true)
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		b.setUp(false, err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.ps = b.rdb.Subscribe(b.ctx)
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		b.keepRunning("receive", b.receiveLoop)
	}()
	go func() {
		defer b.wg.Done()
		b.keepRunning("health", b.healthLoop)
	}()
	return b, nil
}

// keepRunning runs loop until the bus closes, restarting it after a panic (logged) so one
// bad event cannot leave the node deaf.
func (b *RedisBus) keepRunning(what string, loop func()) {
	for b.ctx.Err() == nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					b.log.Error("chat: redis bus loop panicked; restarting it", "loop", what, "panic", v, "stack", string(debug.Stack()))
				}
			}()
			loop()
		}()
		select {
		case <-b.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errRedisDown is returned at once, without a network call, while the health loop knows
// Redis is unreachable.
var errRedisDown = errors.New("redis unreachable")

func (b *RedisBus) checkUp() error {
	if !b.up.Load() {
		return errRedisDown
	}
	return nil
}

func channelOf(room string) string { return "onair:chat:{" + room + "}" }
func keyOf(room, suffix string) string {
	return "onair:chat:{" + room + "}:" + suffix
}

// setUp records reachability, logging only transitions so an outage is logged once.
func (b *RedisBus) setUp(up bool, err error) {
	if b.up.Swap(up) == up {
		return
	}
	if up {
		b.log.Info("chat: redis reachable again", "node", b.node)
	} else {
		b.log.Error("chat: redis unreachable; serving local viewers only", "node", b.node, "err", err)
	}
}

// healthLoop pings Redis with backoff while it is down and every second while it is up.
func (b *RedisBus) healthLoop() {
	const maxBackoff = 5 * time.Second
	wait := time.Second
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		err := b.rdb.Ping(ctx).Err()
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			b.setUp(false, err)
			wait = min(wait*2, maxBackoff)
			continue
		}
		wasDown := !b.up.Load()
		b.setUp(true, nil)
		wait = time.Second
		if wasDown {
			b.resync()
		}
	}
}

// resync asks every local room to fetch what it missed from history.
func (b *RedisBus) resync() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, subs := range b.subs {
		for _, fn := range subs {
			fn(Event{Fill: true})
		}
	}
}

// receiveLoop reads the node's one pub/sub connection. go-redis re-dials it and re-subscribes
// its channels after an error; the loop backs off between failures.
func (b *RedisBus) receiveLoop() {
	wait := 100 * time.Millisecond
	for {
		msg, err := b.ps.Receive(b.ctx)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			// Reachability is the health loop's call; here we only pace reconnects.
			b.log.Debug("chat: redis pub/sub receive failed", "node", b.node, "err", err)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			// (Re)subscribed: anything published meanwhile is in history.
			if m.Kind == "subscribe" {
				b.dispatch(strings.TrimSuffix(strings.TrimPrefix(m.Channel, "onair:chat:{"), "}"), Event{Fill: true})
			}
		case *redis.Message:
			room := strings.TrimSuffix(strings.TrimPrefix(m.Channel, "onair:chat:{"), "}")
			e, err := decodeItem(m.Payload)
			if err != nil {
				b.log.Warn("chat: bad event from redis", "room", room, "err", err)
				continue
			}
			b.dispatch(room, e)
		}
	}
}

func (b *RedisBus) dispatch(room string, e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, fn := range b.subs[room] {
		fn(e)
	}
}

// decodeItem parses "epoch seq payload".
func decodeItem(s string) (Event, error) {
	var e Event
	epoch, rest, ok1 := strings.Cut(s, " ")
	seq, payload, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return e, errors.New("malformed item")
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return e, fmt.Errorf("malformed sequence: %w", err)
	}
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return e, fmt.Errorf("decoding event: %w", err)
	}
	e.Seq, e.Epoch = n, epoch
	return e, nil
}

// Publish implements Bus. While Redis is unreachable, e reaches this node's viewers only.
func (b *RedisBus) Publish(ctx context.Context, room string, e *Event, historyLen int) error {
	if b.ctx.Err() != nil {
		return ErrBusClosed
	}
	if b.up.Load() {
		payload, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("chat: encoding event: %w", err)
		}
		keep, check, del := "0", "0", ""
		if e.Keep() {
			keep = "1"
		}
		if e.Check {
			check = "1"
		}
		if e.Kind == KindDeleted {
			del = `"i":"` + e.ID + `"`
		}
		keys := []string{keyOf(room, "seq"), keyOf(room, "epoch"), keyOf(room, "hist"),
			keyOf(room, "r:u:"+e.UID), keyOf(room, "r:i:"+e.IPTag)}
		res, err := publishScript.Run(ctx, b.rdb, keys, payload, keep, historyLen, channelOf(room), check, del, b.roomTTL.Milliseconds()).Int64Slice()
		if err == nil {
			if res[0] < 0 {
				return restrictedFrom(res)
			}
			e.Seq = res[0]
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chat: publishing to redis: %w", err)
		}
		b.setUp(false, err)
	}
	// Degraded: deliver to this node's viewers, unsequenced.
	ev := *e
	ev.Seq, ev.Local, ev.Check = 0, true, false
	b.dispatch(room, ev)
	return nil
}

func restrictedFrom(res []int64) error {
	if len(res) >= 3 && res[1] < 0 {
		return &RestrictedError{Ban: true}
	}
	return &RestrictedError{Until: time.Now().Add(time.Duration(res[1]) * time.Millisecond)}
}

// Subscribe implements Bus. The node subscribes to a room's channel only while it has
// subscribers for it.
func (b *RedisBus) Subscribe(room string, deliver func(Event)) func() {
	b.mu.Lock()
	subs := b.subs[room]
	if subs == nil {
		subs = make(map[int]func(Event))
		b.subs[room] = subs
	}
	id := b.nextID
	b.nextID++
	subs[id] = deliver
	b.mu.Unlock()
	b.syncChannel(room)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs[room], id)
			if len(b.subs[room]) == 0 {
				delete(b.subs, room)
			}
			b.mu.Unlock()
			b.syncChannel(room)
		})
	}
}

// syncChannel makes the pub/sub subscription of room match whether it has subscribers.
// Serialized, and reading the wanted state under the lock, so a room that closes and reopens
// at once never ends up unsubscribed.
func (b *RedisBus) syncChannel(room string) {
	b.chanMu.Lock()
	defer b.chanMu.Unlock()
	b.mu.Lock()
	want := len(b.subs[room]) > 0
	b.mu.Unlock()
	if want == b.active[room] || b.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	defer cancel()
	if want {
		b.active[room] = true
		if err := b.ps.Subscribe(ctx, channelOf(room)); err != nil {
			// go-redis re-subscribes remembered channels when the connection comes back.
			b.log.Warn("chat: redis subscribe failed; will retry on reconnect", "room", room, "err", err)
		}
		return
	}
	delete(b.active, room)
	b.ps.Unsubscribe(ctx, channelOf(room)) // forgotten by go-redis even if this send fails
}

// History implements Bus.
func (b *RedisBus) History(ctx context.Context, room string, n int) ([]Event, error) {
	if err := b.checkUp(); err != nil {
		return nil, fmt.Errorf("chat: reading history of %s: %w", room, err)
	}
	items, err := b.rdb.LRange(ctx, keyOf(room, "hist"), int64(-n), -1).Result()
	if err != nil {
		return nil, fmt.Errorf("chat: reading history of %s: %w", room, err)
	}
	evs := make([]Event, 0, len(items))
	for _, it := range items {
		e, err := decodeItem(it)
		if err != nil {
			continue
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// Restrict implements Bus.
func (b *RedisBus) Restrict(ctx context.Context, room string, x Restriction) error {
	if err := b.checkUp(); err != nil {
		return fmt.Errorf("chat: storing restriction in %s: %w", room, err)
	}
	kind, ttl := "b", time.Duration(0)
	if !x.Until.IsZero() {
		kind, ttl = "t", time.Until(x.Until)
		if ttl <= 0 {
			return nil
		}
	}
	val := kind + " " + x.IPTag
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if x.UID != "" {
			p.Set(ctx, keyOf(room, "r:u:"+x.UID), val, ttl)
		}
		if x.IPTag != "" {
			p.Set(ctx, keyOf(room, "r:i:"+x.IPTag), val, ttl)
		}
		return nil
	})
	return wrapf(err, "chat: storing restriction in %s", room)
}

// Unrestrict implements Bus.
func (b *RedisBus) Unrestrict(ctx context.Context, room, uid string) (string, error) {
	if err := b.checkUp(); err != nil {
		return "", fmt.Errorf("chat: lifting restriction in %s: %w", room, err)
	}
	v, err := b.rdb.GetDel(ctx, keyOf(room, "r:u:"+uid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("chat: lifting restriction in %s: %w", room, err)
	}
	_, tag, _ := strings.Cut(v, " ")
	if tag != "" {
		if err := b.rdb.Del(ctx, keyOf(room, "r:i:"+tag)).Err(); err != nil {
			return tag, fmt.Errorf("chat: lifting IP restriction in %s: %w", room, err)
		}
	}
	return tag, nil
}

// Restricted implements Bus.
func (b *RedisBus) Restricted(ctx context.Context, room, uid, ipTag string) error {
	if err := b.checkUp(); err != nil {
		return fmt.Errorf("chat: checking restriction in %s: %w", room, err)
	}
	for _, k := range []string{"r:u:" + uid, "r:i:" + ipTag} {
		if k == "r:u:" || k == "r:i:" {
			continue
		}
		key := keyOf(room, k)
		v, err := b.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return fmt.Errorf("chat: checking restriction in %s: %w", room, err)
		}
		if strings.HasPrefix(v, "b") {
			return &RestrictedError{Ban: true}
		}
		ttl, err := b.rdb.PTTL(ctx, key).Result()
		if err == nil && ttl > 0 {
			return &RestrictedError{Until: time.Now().Add(ttl)}
		}
	}
	return nil
}

// Presence implements Bus. A report of local viewers also keeps the room's keys alive.
func (b *RedisBus) Presence(ctx context.Context, room string, local int) (int, error) {
	return b.presence(ctx, room, local)
}

// Viewers implements Bus. While Redis is known to be down it fails at once.
func (b *RedisBus) Viewers(ctx context.Context, room string) (int, error) {
	return b.presence(ctx, room, -1)
}

func (b *RedisBus) presence(ctx context.Context, room string, local int) (int, error) {
	if err := b.checkUp(); err != nil {
		return 0, fmt.Errorf("chat: viewers in %s: %w", room, err)
	}
	keys := []string{keyOf(room, "pres"), keyOf(room, "seq"), keyOf(room, "epoch"), keyOf(room, "hist")}
	n, err := presenceScript.Run(ctx, b.rdb, keys, b.node, local, b.presenceTTL.Milliseconds(), b.roomTTL.Milliseconds()).Int()
	return n, wrapf(err, "chat: viewers in %s", room)
}

// Revoke implements Revocations, in the Redis every node shares.
func (b *RedisBus) Revoke(ctx context.Context, id string, until time.Time) error {
	if err := b.checkUp(); err != nil {
		return fmt.Errorf("chat: revoking moderator token %s: %w", id, err)
	}
	return redisRevoke(ctx, b.rdb, id, until)
}

// Revoked implements Revocations.
func (b *RedisBus) Revoked(ctx context.Context, id string) (bool, error) {
	if err := b.checkUp(); err != nil {
		return false, fmt.Errorf("chat: checking revocation of %s: %w", id, err)
	}
	return redisRevoked(ctx, b.rdb, id)
}

// Ready implements Bus.
func (b *RedisBus) Ready() error {
	if b.ctx.Err() != nil {
		return ErrBusClosed
	}
	return b.checkUp()
}

// Close stops the bus's goroutines and closes its Redis connections.
func (b *RedisBus) Close() error {
	if b.ctx.Err() != nil {
		return nil
	}
	b.cancel()
	err := b.ps.Close()
	b.wg.Wait()
	if e := b.rdb.Close(); err == nil {
		err = e
	}
	return wrapf(err, "chat: closing redis bus")
}

// QuietRedisLogger drops go-redis's own log lines (it logs every failed dial). RedisBus logs an
// outage once itself. go-redis's logger is process-wide, so main installs it:
// redis.SetLogger(chat.QuietRedisLogger{}).
type QuietRedisLogger struct{}

// Printf implements go-redis's internal logging interface.
func (QuietRedisLogger) Printf(context.Context, string, ...any) {}
