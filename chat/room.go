package chat

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Room is one channel's chat on this node: its local clients, a copy of the room's history,
// and the goroutines that fan bus events out to the clients.
type Room struct {
	s       *Server
	name    string
	members int // guarded by s.mu: connections entering or in the room

	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once subscribed and history is loaded

	// inbox receives bus events without blocking the bus; run drains it.
	imu     sync.Mutex
	pending []Event
	wake    chan struct{}

	mu       sync.Mutex
	clients  map[*Client]struct{}
	fanout   []*Client // scratch for broadcastLocked
	history  []histItem
	epoch    string
	lastSeq  int64
	restrict map[string]time.Time // "u:"+uid / "i:"+ipTag → until (zero: ban); local copy for fast refusal
	ipOf     [2]map[string]string // uid → ipTag of recent senders, two generations to bound memory

	total    atomic.Int64 // viewers over all nodes, as last reported by the bus
	inflight atomic.Int64 // broadcast frames queued to local clients and not yet written
}

type histItem struct {
	id   string
	line []byte
}

const recentSenders = 4096

func newRoom(s *Server, name string) *Room {
	ctx, cancel := context.WithCancel(s.ctx)
	return &Room{
		s: s, name: name, ctx: ctx, cancel: cancel,
		ready:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		clients:  make(map[*Client]struct{}),
		restrict: make(map[string]time.Time),
		ipOf:     [2]map[string]string{make(map[string]string), make(map[string]string)},
	}
}

// push is the bus's deliver function: it queues and never blocks.
func (r *Room) push(e Event) {
	r.imu.Lock()
	r.pending = append(r.pending, e)
	r.imu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// step runs one unit of the room's work; a panic in it is logged and counted, and the room
// goes on with the next.
func (r *Room) step(f func()) {
	defer r.s.recovered("room", r.name)
	f()
}

// run owns the room's goroutines until the room's context ends.
func (r *Room) run() {
	unsub := r.s.bus.Subscribe(r.name, r.push)
	r.step(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.loadHistory()
	})
	r.s.metrics.rooms.Add(1)
	defer r.s.metrics.rooms.Add(-1)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.presenceLoop()
	}()
	close(r.ready)

	var last time.Time
	for {
		select {
		case <-r.ctx.Done():
			unsub()
			wg.Wait()
			return
		case <-r.wake:
		}
		// Under load, let events gather so each viewer gets fewer, fuller frames: a write per
		// viewer per frame is what costs, not the bytes. A quiet room sends at once.
		if wait := r.s.opts.FrameInterval - time.Since(last); wait > 0 {
			select {
			case <-r.ctx.Done():
				continue
			case <-time.After(wait):
			}
		}
		r.holdWhileBusy()
		last = time.Now()
		r.step(r.drain)
	}
}

// holdWhileBusy waits, for at most two frame intervals, while the previous frames are still
// being written to most clients: when the CPU is the bottleneck, events then share frames
// and the room needs fewer writes, which is what it is short of. Stuck clients (up to 1 in
// 64) do not hold it up.
func (r *Room) holdWhileBusy() {
	if r.s.opts.FrameInterval <= 0 {
		return
	}
	deadline := time.Now().Add(2 * r.s.opts.FrameInterval)
	for r.inflight.Load() > int64(r.localCount()/64) && time.Now().Before(deadline) {
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// loadHistory replaces the local history with the bus's. Called with r.mu held.
func (r *Room) loadHistory() {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	evs, err := r.s.bus.History(ctx, r.name, r.s.opts.HistoryLen)
	if err != nil {
		r.s.log.Warn("chat: loading history failed", "room", r.name, "err", err)
		return
	}
	r.history = r.history[:0]
	for i := range evs {
		r.noteSender(&evs[i])
		r.history = append(r.history, histItem{id: evs[i].ID, line: withSeq(&evs[i])})
		r.epoch, r.lastSeq = evs[i].Epoch, evs[i].Seq
	}
}

// fill delivers kept events between r.lastSeq and upto (exclusive; 0 for all) from the bus's
// history: events lost in transit, e.g. while the node's subscription was reconnecting.
func (r *Room) fill(upto int64, batch *frameBatch) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Second)
	defer cancel()
	evs, err := r.s.bus.History(ctx, r.name, r.s.opts.HistoryLen)
	if err != nil {
		r.s.log.Warn("chat: filling a gap from history failed", "room", r.name, "err", err)
		return
	}
	for i := range evs {
		e := &evs[i]
		if r.epoch == "" && e.Seq > 0 {
			r.epoch = e.Epoch // nothing sequenced was applied yet: all of history is new
		}
		if e.Epoch != r.epoch || e.Seq <= r.lastSeq || (upto > 0 && e.Seq >= upto) {
			continue
		}
		r.s.metrics.gapFilled.Add(1)
		r.lastSeq = e.Seq
		batch.add(r.apply(e))
	}
}

// drain applies queued events in order and sends them to every client, coalescing
// what has piled up into as few frames as possible. Each frame is encoded once.
func (r *Room) drain() {
	r.imu.Lock()
	evs := r.pending
	r.pending = nil
	r.imu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	batch := frameBatch{r: r, max: r.s.opts.MaxBatchBytes}
	for i := range evs {
		r.drainOne(&evs[i], &batch)
	}
	batch.flush()
}

// drainOne applies one event into batch. A panic loses this event only, not the ones
// after it. Called with r.mu held.
func (r *Room) drainOne(e *Event, batch *frameBatch) {
	defer r.s.recovered("room event", r.name)
	if e.Fill {
		r.fill(0, batch)
		return
	}
	if e.Keep() && e.Seq > 0 {
		if e.Epoch != r.epoch {
			r.epoch, r.lastSeq = e.Epoch, 0 // the bus lost its state; start counting again
		}
		if e.Seq <= r.lastSeq {
			return // already delivered (history load raced the subscription)
		}
		if r.lastSeq > 0 && e.Seq > r.lastSeq+1 {
			r.fill(e.Seq, batch)
		}
		r.lastSeq = e.Seq
	}
	batch.add(r.apply(e))
}

// frameBatch joins event lines with '\n' into frames of at most max bytes.
type frameBatch struct {
	r   *Room
	max int
	buf bytes.Buffer
}

func (b *frameBatch) add(line []byte) {
	if line == nil {
		return
	}
	if b.buf.Len() > 0 && b.buf.Len()+1+len(line) > b.max {
		b.flush()
	}
	if b.buf.Len() > 0 {
		b.buf.WriteByte('\n')
	}
	b.buf.Write(line)
}

func (b *frameBatch) flush() {
	if b.buf.Len() == 0 {
		return
	}
	b.r.broadcastLocked(bytes.Clone(b.buf.Bytes()))
	b.buf.Reset()
}

// broadcast sends one frame to every local client.
func (r *Room) broadcast(payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcastLocked(payload)
}

// broadcastLocked sends one frame to every local client. Called with r.mu held.
// The frame is encoded once; the writes are spread over the CPUs, since on a big room
// they are nearly all of the work.
func (r *Room) broadcastLocked(payload []byte) {
	start := time.Now()
	defer func() { r.s.metrics.fanout.observe(time.Since(start)) }()
	frame := encodeFrame(websocket.TextMessage, payload)
	r.s.metrics.frames.Add(1)
	r.s.metrics.deliveries.Add(int64(len(r.clients)))
	r.fanout = r.fanout[:0]
	for c := range r.clients {
		r.fanout = append(r.fanout, c)
	}
	cs := r.fanout
	workers := min(runtime.GOMAXPROCS(0), len(cs)/256+1)
	var wg sync.WaitGroup
	per := (len(cs) + workers - 1) / workers
	for w := 1; w < workers; w++ {
		part := cs[min(w*per, len(cs)):min((w+1)*per, len(cs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.s.recovered("fan-out", r.name)
			for _, c := range part {
				c.deliver(frame, &r.inflight)
			}
		}()
	}
	for _, c := range cs[:min(per, len(cs))] {
		c.deliver(frame, &r.inflight)
	}
	wg.Wait()
	clear(r.fanout)
}

// apply updates local state for e and returns its public line, or nil to send nothing.
// Called with r.mu held.
func (r *Room) apply(e *Event) []byte {
	switch e.Kind {
	case KindMsg, KindSystem:
		r.noteSender(e)
		line := withSeq(e)
		r.history = append(r.history, histItem{id: e.ID, line: line})
		if over := len(r.history) - r.s.opts.HistoryLen; over > 0 {
			r.history = append(r.history[:0], r.history[over:]...)
		}
		return line
	case KindDeleted:
		for i, h := range r.history {
			if h.id == e.ID {
				r.history = append(r.history[:i], r.history[i+1:]...)
				break
			}
		}
	case KindTimeout, KindBan:
		until := time.Time{}
		if e.Kind == KindTimeout {
			until = time.UnixMilli(e.Until)
		}
		if e.UID != "" {
			r.restrict["u:"+e.UID] = until
		}
		if e.IPTag != "" {
			r.restrict["i:"+e.IPTag] = until
		}
		if e.Kind == KindBan {
			for c := range r.clients {
				// Moderators sharing the banned IP (same office, NAT) stay connected.
				if c.id == e.UID || (e.IPTag != "" && c.ipTag == e.IPTag && !c.mod.Load()) {
					c.closeWith(closeBanned, reasonBanned)
				}
			}
		}
	case KindUnban:
		delete(r.restrict, "u:"+e.UID)
		if e.IPTag != "" {
			delete(r.restrict, "i:"+e.IPTag)
		}
	default:
		return nil
	}
	return e.Body
}

func (r *Room) noteSender(e *Event) {
	if e.UID == "" || e.IPTag == "" {
		return
	}
	if len(r.ipOf[0]) >= recentSenders {
		r.ipOf[1], r.ipOf[0] = r.ipOf[0], make(map[string]string)
	}
	r.ipOf[0][e.UID] = e.IPTag
}

// ipTagOf returns the IP tag of a user on this node or seen recently in the room.
func (r *Room) ipTagOf(uid string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clients {
		if c.id == uid {
			return c.ipTag
		}
	}
	if t, ok := r.ipOf[0][uid]; ok {
		return t
	}
	return r.ipOf[1][uid]
}

// restricted checks the local copy of restrictions (it also works while the bus is down).
func (r *Room) restricted(uid, ipTag string, now time.Time) *RestrictedError {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range [2]string{"u:" + uid, "i:" + ipTag} {
		until, ok := r.restrict[k]
		switch {
		case !ok:
		case until.IsZero():
			return &RestrictedError{Ban: true}
		case now.Before(until):
			return &RestrictedError{Until: until}
		default:
			delete(r.restrict, k)
		}
	}
	return nil
}

// add puts c in the room and queues its welcome, so c sees the history up to now and
// every event after it, nothing twice.
func (r *Room) add(c *Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clients[c] = struct{}{}
	var hist bytes.Buffer
	hist.WriteByte('[')
	for i, h := range r.history {
		if i > 0 {
			hist.WriteByte(',')
		}
		hist.Write(h.line)
	}
	hist.WriteByte(']')
	viewers := int(r.total.Load())
	if viewers < len(r.clients) {
		viewers = len(r.clients)
	}
	o := &r.s.opts
	w := mustJSON(welcomeJSON{
		Type: "welcome", Channel: r.name, You: c.user(), Viewers: viewers, History: hist.Bytes(),
		Limits: limitsJSON{MaxLength: o.MaxMessageLen, Messages: o.ConnMessages, WindowMS: o.ConnWindow.Milliseconds()},
	})
	c.send(w)
}

func (r *Room) remove(c *Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clients, c)
}

func (r *Room) localCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}

func (r *Room) viewers() int {
	if n := int(r.total.Load()); n > 0 {
		return n
	}
	return r.localCount()
}

// closeAll closes every local client with code.
func (r *Room) closeAll(code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clients {
		c.closeWith(code, reason)
	}
}

// presenceLoop reports this node's viewers to the bus and pushes the room's total to local
// clients when it changes. It runs apart from delivery so a slow bus never delays messages.
func (r *Room) presenceLoop() {
	t := time.NewTicker(r.s.opts.PresenceInterval)
	defer t.Stop()
	var p presenceState
	p.sent = -1
	for {
		r.step(func() { r.reportPresence(&p) })
		select {
		case <-r.ctx.Done():
			r.step(func() { r.withdrawPresence(&p) })
			return
		case <-t.C:
		}
	}
}

// presenceState is what the presence loop remembers between reports.
type presenceState struct {
	sent         int64 // count last pushed to clients
	local, total int   // last report: this node's viewers, all nodes'
}

// reportPresence reports local viewers, pushes a changed total and drops expired time-outs.
func (r *Room) reportPresence(p *presenceState) {
	local := r.localCount()
	ctx, cancel := context.WithTimeout(r.ctx, time.Second)
	total, err := r.s.bus.Presence(ctx, r.name, local)
	cancel()
	if err != nil {
		// Best answer while the bus is away: our own viewers plus the others' as last seen.
		total = local + max(0, p.total-p.local)
	}
	p.local, p.total = local, total
	r.total.Store(int64(total))
	r.s.noteViewers(r.name, total)
	if int64(total) != p.sent {
		p.sent = int64(total)
		line := mustJSON(struct {
			Type  string `json:"type"`
			Count int    `json:"count"`
		}{"viewers", total})
		r.broadcast(line)
	}
	r.mu.Lock()
	now := time.Now()
	for k, until := range r.restrict {
		if !until.IsZero() && now.After(until) {
			delete(r.restrict, k)
		}
	}
	r.mu.Unlock()
}

// withdrawPresence removes this node's share as the room stops, and leaves the count of the
// other nodes' viewers as the last one seen.
func (r *Room) withdrawPresence(p *presenceState) {
	// The room's context is over, so use a fresh one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	total, err := r.s.bus.Presence(ctx, r.name, 0)
	if err != nil {
		total = max(0, p.total-p.local)
	}
	r.s.noteViewers(r.name, total)
}
