package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Event is one room event as it travels over a Bus: the public JSON body (encoded once by the
// node that accepted it) plus the private facts moderation needs, which viewers never see.
type Event struct {
	Seq   int64           `json:"-"`           // assigned by the bus to kept events (msg, system); 0 otherwise
	Kind  string          `json:"k"`           // KindMsg, KindSystem, KindDeleted, ...
	ID    string          `json:"i,omitempty"` // message id, or the deleted message's id
	UID   string          `json:"u,omitempty"` // sender (msg) or target (timeout, ban, unban)
	IPTag string          `json:"p,omitempty"` // keyed hash of the sender's or target's IP
	Body  json.RawMessage `json:"b"`           // public JSON object, without "seq"
	Until int64           `json:"t,omitempty"` // timeout: end, unix milliseconds
	Epoch string          `json:"-"`           // changes when the bus's sequence restarts (e.g. Redis lost its data)
	Local bool            `json:"-"`           // accepted while the shared bus was unreachable: this node only
	Fill  bool            `json:"f,omitempty"` // internal: ask the room to re-read history (after a bus reconnect)
	Check bool            `json:"-"`           // Publish: refuse if UID or IPTag is restricted
}

// Keep reports whether the event is sequenced and kept in history.
func (e *Event) Keep() bool { return e.Kind == KindMsg || e.Kind == KindSystem }

// Restriction is a time-out (Until set) or a ban (Until zero) of a user and their IP in a room.
type Restriction struct {
	UID   string
	IPTag string
	Until time.Time // zero for a ban
}

// RestrictedError is returned by Publish and Restricted when the sender may not post.
type RestrictedError struct {
	Ban   bool
	Until time.Time
}

func (e *RestrictedError) Error() string {
	if e.Ban {
		return "banned"
	}
	return "timed out until " + e.Until.UTC().Format(time.RFC3339)
}

// ErrBusClosed is returned by a Bus after Close.
var ErrBusClosed = errors.New("chat: bus closed")

// Bus carries room events between chat nodes and keeps the state they share:
// the sequence and history of each room, restrictions and presence.
type Bus interface {
	// Publish accepts e into room: kept events get the next sequence number and join the
	// history (bounded by historyLen); a KindDeleted event removes its message from history.
	// Every subscriber of room, on every node, then receives e in acceptance order.
	// With e.Check set it first refuses a restricted sender with *RestrictedError.
	Publish(ctx context.Context, room string, e *Event, historyLen int) error
	// Subscribe calls deliver, from one goroutine at a time and in order, for room's events
	// until the returned cancel is called. deliver must not block.
	Subscribe(room string, deliver func(Event)) (cancel func())
	// History returns up to n most recent kept events of room, oldest first.
	History(ctx context.Context, room string, n int) ([]Event, error)
	// Restrict stores r for room; RestrictedFor reports a restriction on uid or ipTag.
	Restrict(ctx context.Context, room string, r Restriction) error
	// Unrestrict lifts uid's restriction and returns the IP tag it also covered.
	Unrestrict(ctx context.Context, room, uid string) (ipTag string, err error)
	// Restricted returns a *RestrictedError if uid or ipTag may not post in room, else nil.
	Restricted(ctx context.Context, room, uid, ipTag string) error
	// Presence records that this node has local viewers in room (0 removes its share)
	// and returns the sum over all live nodes.
	Presence(ctx context.Context, room string, local int) (int, error)
	// Viewers returns the sum over all live nodes without changing this node's share.
	Viewers(ctx context.Context, room string) (int, error)
	// Ready returns nil while the bus can reach its shared state.
	Ready() error
	// Close releases the bus; subscriptions stop.
	Close() error
}

// MemoryBus is a Bus inside one process: the default for a single node. A room nobody is
// in keeps its history for MemoryOptions.RoomTTL, then it is dropped (bans stay).
type MemoryBus struct {
	ttl time.Duration

	mu     sync.Mutex
	rooms  map[string]*memRoom
	sweep  *time.Timer // armed while some room is idle
	closed bool
}

type memRoom struct {
	seq      int64
	history  []Event
	subs     map[int]func(Event)
	nextSub  int
	restrict map[string]memRestriction // "u:"+uid or "i:"+ipTag
	viewers  int
	idle     time.Time // when the last subscriber or viewer left; zero while in use
}

type memRestriction struct {
	until time.Time // zero: ban
	ipTag string
}

// MemoryOptions tunes a MemoryBus; zero fields take defaults.
type MemoryOptions struct {
	RoomTTL time.Duration // how long a room nobody is in keeps its history (10m)
}

// NewMemoryBus returns an empty in-memory bus.
func NewMemoryBus(mo MemoryOptions) *MemoryBus {
	if mo.RoomTTL <= 0 {
		mo.RoomTTL = DefaultOptions().RoomTTL
	}
	return &MemoryBus{ttl: mo.RoomTTL, rooms: make(map[string]*memRoom)}
}

func (b *MemoryBus) room(name string) *memRoom {
	r := b.rooms[name]
	if r == nil {
		r = &memRoom{subs: make(map[int]func(Event)), restrict: make(map[string]memRestriction)}
		b.rooms[name] = r
	}
	r.idle = time.Time{}
	return r
}

// gc drops a room that holds nothing worth keeping, so idle rooms cost no memory, and starts
// the clock on a room that still holds history or restrictions but has nobody in it.
// Called with b.mu held.
func (b *MemoryBus) gc(name string, r *memRoom) {
	if len(r.subs) > 0 || r.viewers > 0 {
		r.idle = time.Time{}
		return
	}
	if len(r.history) == 0 && len(r.restrict) == 0 {
		delete(b.rooms, name)
		return
	}
	if r.idle.IsZero() {
		r.idle = time.Now()
	}
	if b.sweep == nil && !b.closed {
		b.sweep = time.AfterFunc(b.ttl, b.sweepIdle)
	}
}

// sweepIdle forgets the history of rooms idle for the TTL and expired time-outs, and
// re-arms itself while idle rooms remain.
func (b *MemoryBus) sweepIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweep = nil
	if b.closed {
		return
	}
	now := time.Now()
	next := time.Duration(-1)
	for name, r := range b.rooms {
		if r.idle.IsZero() {
			continue
		}
		if left := b.ttl - now.Sub(r.idle); left > 0 {
			if next < 0 || left < next {
				next = left
			}
			continue
		}
		r.history = nil
		for k, x := range r.restrict {
			if !x.until.IsZero() && !now.Before(x.until) {
				delete(r.restrict, k)
			}
		}
		timeouts := false
		for _, x := range r.restrict {
			timeouts = timeouts || !x.until.IsZero()
		}
		switch {
		case len(r.restrict) == 0:
			delete(b.rooms, name)
		case timeouts:
			r.idle = now // look again when the next ones may have expired
			if next < 0 || b.ttl < next {
				next = b.ttl
			}
		default:
			r.idle = time.Time{} // only bans left: kept, not swept again
		}
	}
	if len(b.rooms) == 0 {
		b.rooms = make(map[string]*memRoom) // a map never shrinks; a new one does
	}
	if next >= 0 {
		b.sweep = time.AfterFunc(next, b.sweepIdle)
	}
}

// Rooms returns how many rooms the bus holds state for (for tests and metrics).
func (b *MemoryBus) Rooms() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rooms)
}

func (r *memRoom) restricted(uid, ipTag string, now time.Time) error {
	for _, k := range []string{"u:" + uid, "i:" + ipTag} {
		if k == "u:" || k == "i:" {
			continue
		}
		x, ok := r.restrict[k]
		if !ok {
			continue
		}
		if x.until.IsZero() {
			return &RestrictedError{Ban: true}
		}
		if now.Before(x.until) {
			return &RestrictedError{Until: x.until}
		}
		delete(r.restrict, k)
	}
	return nil
}

// Publish implements Bus.
func (b *MemoryBus) Publish(ctx context.Context, room string, e *Event, historyLen int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBusClosed
	}
	r := b.room(room)
	defer b.gc(room, r)
	if e.Check {
		if err := r.restricted(e.UID, e.IPTag, time.Now()); err != nil {
			return err
		}
	}
	ev := *e
	ev.Check = false
	if ev.Keep() {
		r.seq++
		ev.Seq = r.seq
		e.Seq = r.seq
		r.history = append(r.history, ev)
		if over := len(r.history) - historyLen; over > 0 {
			r.history = append(r.history[:0:0], r.history[over:]...)
		}
	}
	if ev.Kind == KindDeleted {
		for i, h := range r.history {
			if h.ID == ev.ID {
				r.history = append(r.history[:i:i], r.history[i+1:]...)
				break
			}
		}
	}
	// Delivering under the lock keeps acceptance order; deliver functions never block.
	for _, fn := range r.subs {
		fn(ev)
	}
	return nil
}

// Subscribe implements Bus.
func (b *MemoryBus) Subscribe(room string, deliver func(Event)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.room(room)
	id := r.nextSub
	r.nextSub++
	r.subs[id] = deliver
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if r := b.rooms[room]; r != nil {
				delete(r.subs, id)
				b.gc(room, r)
			}
		})
	}
}

// History implements Bus.
func (b *MemoryBus) History(ctx context.Context, room string, n int) ([]Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[room]
	if r == nil {
		return nil, nil
	}
	h := r.history
	if len(h) > n {
		h = h[len(h)-n:]
	}
	return append([]Event(nil), h...), nil
}

// Restrict implements Bus.
func (b *MemoryBus) Restrict(ctx context.Context, room string, x Restriction) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.room(room)
	defer b.gc(room, r)
	m := memRestriction{until: x.Until, ipTag: x.IPTag}
	if x.UID != "" {
		r.restrict["u:"+x.UID] = m
	}
	if x.IPTag != "" {
		r.restrict["i:"+x.IPTag] = m
	}
	return nil
}

// Unrestrict implements Bus.
func (b *MemoryBus) Unrestrict(ctx context.Context, room, uid string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[room]
	if r == nil {
		return "", nil
	}
	x, ok := r.restrict["u:"+uid]
	delete(r.restrict, "u:"+uid)
	if ok && x.ipTag != "" {
		delete(r.restrict, "i:"+x.ipTag)
	}
	b.gc(room, r)
	return x.ipTag, nil
}

// Restricted implements Bus.
func (b *MemoryBus) Restricted(ctx context.Context, room, uid, ipTag string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[room]
	if r == nil {
		return nil
	}
	return r.restricted(uid, ipTag, time.Now())
}

// Presence implements Bus.
func (b *MemoryBus) Presence(ctx context.Context, room string, local int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.room(room)
	r.viewers = local
	b.gc(room, r)
	return local, nil
}

// Viewers implements Bus.
func (b *MemoryBus) Viewers(ctx context.Context, room string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.rooms[room]; r != nil {
		return r.viewers, nil
	}
	return 0, nil
}

// Ready implements Bus.
func (b *MemoryBus) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBusClosed
	}
	return nil
}

// Close implements Bus.
func (b *MemoryBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.sweep != nil {
		b.sweep.Stop()
		b.sweep = nil
	}
	return nil
}

// String describes the bus for logs.
func (b *MemoryBus) String() string { return "memory" }

// wrapf wraps err with what was being done, keeping nil as nil.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
