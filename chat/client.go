package chat

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Client is one WebSocket connection in a room. Its reader runs in the goroutine that serves
// the connection; its writer is a goroutine the reader starts and waits for.
//
// Outbound frames are written by whoever holds the socket (busy): a broadcast tries one
// non-blocking write straight from the room's fan-out, which is the common case and costs
// no goroutine switch; whatever does not fit in the socket buffer is queued, in order, for the
// writer goroutine, which blocks on the socket (with a deadline) so the room never does.
type Client struct {
	s     *Server
	room  *Room
	conn  *websocket.Conn // reading only; writes go to the socket directly
	nc    net.Conn
	raw   syscall.RawConn // nil if the connection has no file descriptor
	id    string
	ip    string
	ipTag string
	lim   *Limiter // per connection
	ipLim *Limiter // shared by the IP's connections

	name   string         // owned by the reader goroutine
	modTok ModeratorToken // owned by the reader goroutine: the token that made it a moderator
	mod    atomic.Bool    // read by the room when applying IP bans

	mu        sync.Mutex
	busy      bool // the socket is being written (by a fan-out or the writer)
	queue     []outItem
	queued    int // bytes in queue
	closeCode int // >0: writer sends this close frame and stops; <0: gone
	closeText string
	wake      chan struct{}
	stop      chan struct{} // closed when the reader is done
}

// outItem is (the rest of) one encoded frame waiting to be written.
type outItem struct {
	data    []byte
	track   *atomic.Int64 // the room's count of broadcast frames not yet written, or nil
	partial bool          // the rest of a frame already begun on the wire: must be finished
}

// done marks the item written or dropped.
func (it *outItem) done() {
	if it.track != nil {
		it.track.Add(-1)
	}
	*it = outItem{} // let the frame be collected
}

func newClient(s *Server, conn *websocket.Conn, ip, ipTag string, ipLim *Limiter) *Client {
	c := &Client{
		s: s, conn: conn, nc: conn.NetConn(), id: newID("u_"), ip: ip, ipTag: ipTag, ipLim: ipLim,
		lim:  NewLimiter(s.opts.ConnMessages, s.opts.ConnWindow),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	if sc, ok := c.nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

func (c *Client) user() userJSON { return userJSON{ID: c.id, Name: c.name, Mod: c.mod.Load()} }

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// deliver sends one encoded frame: at once if the socket takes it, else through the queue.
// It never blocks on the network. A client whose queue would exceed its byte budget is cut
// off instead: the room never waits for a slow reader.
func (c *Client) deliver(frame []byte, track *atomic.Int64) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	if c.busy || len(c.queue) > 0 || c.raw == nil {
		c.enqueueLocked(outItem{data: frame, track: track})
		c.mu.Unlock()
		return
	}
	c.busy = true
	c.mu.Unlock()

	n, err := c.tryWrite(frame)

	c.mu.Lock()
	c.busy = false
	switch {
	case err != nil:
		c.goneLocked()
		c.mu.Unlock()
		c.ended("write", err)
		c.nc.Close() // the reader sees it and cleans up
		return
	case n < len(frame) && c.closeCode >= 0: // (a gone connection's writer is no more)
		c.s.metrics.queued.Add(1)
		// Frames queued meanwhile come after the rest of this one.
		c.queue = append(c.queue, outItem{})
		copy(c.queue[1:], c.queue)
		c.queued += len(frame) - n
		if track != nil {
			track.Add(1)
		}
		c.queue[0] = outItem{data: frame[n:], track: track, partial: true}
		if c.queued > c.s.opts.MaxQueueBytes {
			c.slowLocked()
		}
	}
	pending := len(c.queue) > 0 || c.closeCode != 0
	c.mu.Unlock()
	if pending {
		c.signal()
	}
}

// tryWrite writes what the socket buffer takes now, without waiting.
func (c *Client) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true // never wait for writability here: that is the writer's job
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A deadline the writer or a close left behind: let the writer, which sets its
		// own, take this frame.
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN || werr == syscall.EINTR {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// enqueueLocked queues an item for the writer. Called with c.mu held.
func (c *Client) enqueueLocked(it outItem) {
	if c.queued+len(it.data) > c.s.opts.MaxQueueBytes {
		c.slowLocked()
		return
	}
	c.s.metrics.queued.Add(1)
	c.queue = append(c.queue, it)
	c.queued += len(it.data)
	if it.track != nil {
		it.track.Add(1)
	}
	if !c.busy {
		c.signal()
	}
}

func (c *Client) slowLocked() {
	c.s.metrics.slowClosed.Add(1)
	c.closeLocked(websocket.ClosePolicyViolation, reasonSlow)
}

// closeWith makes the writer drop what is queued, send a close frame and end the connection.
func (c *Client) closeWith(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason)
	c.mu.Unlock()
}

func (c *Client) closeLocked(code int, reason string) {
	if c.closeCode == 0 {
		c.closeCode, c.closeText = code, reason
		// Drop what is queued, except the end of a frame already begun: the close frame
		// can only follow whole frames.
		var head []outItem
		if len(c.queue) > 0 && c.queue[0].partial {
			head, c.queue = c.queue[:1:1], c.queue[1:]
		}
		c.dropQueueLocked()
		c.queue = head
		for _, it := range head {
			c.queued += len(it.data)
		}
		// A write blocked on a full socket gets a second, not WriteTimeout, to finish.
		c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
	}
	c.signal()
}

// goneLocked marks the connection unusable: nothing more is queued or written.
func (c *Client) goneLocked() {
	if c.closeCode <= 0 {
		c.closeCode = -1
	}
	c.dropQueueLocked()
}

func (c *Client) dropQueueLocked() {
	for i := range c.queue {
		c.queue[i].done()
	}
	c.queue, c.queued = nil, 0
}

// closeGrace bounds the writes a closing connection still makes.
const closeGrace = time.Second

var pingFrame = []byte{0x80 | websocket.PingMessage, 0}

// writeLoop writes what deliver queued, pings, and the final close frame.
func (c *Client) writeLoop() {
	var batch []outItem
	defer func() {
		c.mu.Lock()
		c.goneLocked()
		c.mu.Unlock()
		for i := range batch {
			batch[i].done()
		}
		c.nc.Close() // unblocks the reader when the writer gives up first
	}()
	ping := time.NewTicker(c.s.opts.PingInterval)
	defer ping.Stop()
	for {
		stopping := false
		select {
		case <-c.stop:
			stopping = true // still send a close frame the reader asked for
		case <-ping.C:
			c.mu.Lock()
			c.enqueueLocked(outItem{data: pingFrame})
			c.mu.Unlock()
		case <-c.wake:
		}
		c.mu.Lock()
		if c.busy {
			c.mu.Unlock()
			if stopping {
				return
			}
			continue // the fan-out holding the socket signals when it is done
		}
		if code := c.closeCode; (code != 0 || stopping) && (len(c.queue) == 0 || !c.queue[0].partial) {
			text := c.closeText
			c.mu.Unlock()
			if code > 0 {
				c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
				c.nc.Write(encodeFrame(websocket.CloseMessage, websocket.FormatCloseMessage(code, text)))
			}
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.busy = true
		c.mu.Unlock()
		for i, it := range batch {
			c.mu.Lock()
			closing := c.closeCode != 0
			c.mu.Unlock()
			if closing && !it.partial {
				break // whole frames queued before a close are dropped
			}
			timeout := c.s.opts.WriteTimeout
			if closing {
				timeout = closeGrace
			}
			c.nc.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := c.nc.Write(it.data); err != nil {
				c.ended("write", err)
				return // maybe mid-frame: no close frame can follow
			}
			c.mu.Lock()
			c.queued -= len(it.data)
			c.mu.Unlock()
			batch[i].done()
		}
		for i := range batch {
			batch[i].done() // the ones skipped above
		}
		c.mu.Lock()
		c.busy = false
		if c.closeCode == 0 {
			// An expired deadline would fail the fan-out's next direct write to the socket.
			c.nc.SetWriteDeadline(time.Time{})
		}
		more := len(c.queue) > 0 || c.closeCode != 0
		c.mu.Unlock()
		if more {
			c.signal()
		}
	}
}

// encodeFrame returns a complete unmasked (server) WebSocket frame.
func encodeFrame(op int, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n < 1<<16:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | byte(op) // FIN
	return append(b, payload...)
}

// serve runs the connection: join the room, read until the client goes, then clean up.
func (c *Client) serve(channel, name string) {
	room, err := c.s.enterRoom(channel)
	if err != nil {
		closeNow(c.conn, websocket.CloseGoingAway, reasonShutdown)
		return
	}
	defer c.s.leaveRoom(room)
	c.room = room
	c.s.metrics.conns.Add(1)
	defer c.s.metrics.conns.Add(-1)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer c.s.recovered("connection writer", channel)
		c.writeLoop()
	}()
	defer func() {
		room.remove(c)
		close(c.stop)
		<-writerDone
	}()
	// Runs first on a panic in the reader: the client gets 1011 before the writer stops.
	defer func() {
		if v := recover(); v != nil {
			c.s.panicked("connection", channel, v)
			c.closeWith(websocket.CloseInternalServerErr, reasonInternal)
		}
	}()

	// A name in the URL is a join before the welcome, so the welcome shows it.
	var joinErr []byte
	if name != "" {
		if n, code := checkName(name, &c.s.opts, false); code != "" {
			joinErr = errorLine(code, "display name not allowed", "", 0)
		} else {
			c.name = n
		}
	}
	room.add(c)
	if joinErr != nil {
		c.send(joinErr)
	}
	c.readLoop()
}

// ended logs, at debug level, why the connection's reading or writing stopped. (A method of
// its own keeps the log call's arguments out of the long-lived reader's and writer's frames.)
//
//go:noinline
func (c *Client) ended(what string, err error) {
	c.s.log.Debug("chat: connection "+what+" ended", "user", c.id, "err", err)
}

func (c *Client) send(line []byte) { c.deliver(encodeFrame(websocket.TextMessage, line), nil) }

func (c *Client) fail(code, msg, ref string, retry time.Duration) {
	c.s.metrics.rejected(code)
	c.send(errorLine(code, msg, ref, retry))
}

func (c *Client) readLoop() {
	o := &c.s.opts
	c.conn.SetReadDeadline(time.Now().Add(o.PongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(o.PongWait))
	})
	// Replies go through deliver: every write to the socket has one owner at a time.
	c.conn.SetPingHandler(func(data string) error {
		c.deliver(encodeFrame(websocket.PongMessage, []byte(data)), nil)
		return nil
	})
	c.conn.SetCloseHandler(func(code int, text string) error {
		if code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure {
			code = websocket.CloseNormalClosure
		}
		c.closeWith(code, "")
		return nil
	})
	for {
		typ, r, err := c.conn.NextReader()
		if err != nil {
			c.ended("read", err)
			return
		}
		// Read at most one byte past the limit: a huge frame is never buffered.
		data, err := io.ReadAll(io.LimitReader(r, o.ReadLimit+1))
		if err != nil {
			c.ended("read", err)
			return
		}
		if int64(len(data)) > o.ReadLimit {
			c.s.metrics.tooBig.Add(1)
			c.closeWith(websocket.CloseMessageTooBig, "")
			return
		}
		// Any frame proves the client is alive, not only pongs.
		c.conn.SetReadDeadline(time.Now().Add(o.PongWait))
		if typ != websocket.TextMessage {
			c.fail(codeBadJSON, "expected a JSON text frame", "", 0)
			continue
		}
		var in inMsg
		if err := json.Unmarshal(data, &in); err != nil {
			c.fail(codeBadJSON, "frame is not a JSON object", "", 0)
			continue
		}
		if len(in.Ref) > maxRefLen {
			// Cutting it would echo something the client never sent (and, cut inside a
			// character, longer once re-encoded).
			c.fail(codeBadRequest, fmt.Sprintf("ref longer than %d bytes", maxRefLen), "", 0)
			continue
		}
		c.handle(&in)
	}
}

func (c *Client) handle(in *inMsg) {
	switch in.Type {
	case "join":
		c.join(in)
	case "send":
		c.post(in)
	case "ping":
		c.send(mustJSON(struct {
			Type string `json:"type"`
			Ref  string `json:"ref,omitempty"`
		}{"pong", in.Ref}))
	case "delete", "timeout", "ban", "unban":
		if c.stillModerator(in.Ref) {
			c.moderate(in)
		}
	default:
		c.fail(codeUnknownType, "unknown message type", in.Ref, 0)
	}
}

func (c *Client) join(in *inMsg) {
	mod, tok := c.mod.Load(), c.modTok
	if in.Token != "" {
		t, code, msg := c.s.checkModerator(c.room.name, in.Token)
		if code != "" {
			c.fail(code, msg, in.Ref, 0)
			return
		}
		mod, tok = true, t
	}
	name, code := checkName(in.Name, &c.s.opts, mod)
	if code != "" {
		c.fail(code, "display name not allowed", in.Ref, 0)
		return
	}
	if mod && tok.ID != c.modTok.ID {
		c.s.log.Info("chat: moderator joined", "room", c.room.name, "user", c.id, "token_id", tok.ID, "token_expires", tok.Expires)
	}
	c.name, c.modTok = name, tok
	c.mod.Store(mod)
	c.send(mustJSON(struct {
		Type string   `json:"type"`
		You  userJSON `json:"you"`
		Ref  string   `json:"ref,omitempty"`
	}{"joined", c.user(), in.Ref}))
}

func (c *Client) post(in *inMsg) {
	o := &c.s.opts
	if c.name == "" {
		c.fail(codeNameRequired, "join with a display name first", in.Ref, 0)
		return
	}
	text := strings.TrimSpace(in.Text)
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		c.fail(codeEmpty, "empty message", in.Ref, 0)
		return
	case n > o.MaxMessageLen:
		c.fail(codeTooLong, fmt.Sprintf("message longer than %d characters", o.MaxMessageLen), in.Ref, 0)
		return
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if masked, hit := c.s.filter.Apply(text); hit {
		if o.FilterMode == FilterRefuse {
			c.fail(codeFiltered, "message contains a filtered word", in.Ref, 0)
			return
		}
		text = masked
	}
	now := time.Now()
	if c.mod.Load() && !now.Before(c.modTok.Expires) {
		c.demote("moderator token expired", "")
	}
	if re := c.room.restricted(c.id, c.ipTag, now); re != nil {
		c.failRestricted(re, in.Ref, now)
		return
	}
	if !c.mod.Load() {
		if ok, wait := c.lim.Allow(now); !ok {
			c.fail(codeRateLimited, "too many messages; slow down", in.Ref, wait)
			return
		}
		if ok, wait := c.ipLim.Allow(now); !ok {
			c.lim.Undo()
			c.fail(codeRateLimited, "too many messages from your network; slow down", in.Ref, wait)
			return
		}
	}
	e := &Event{Kind: KindMsg, ID: newID("m_"), UID: c.id, IPTag: c.ipTag, Check: true}
	e.Body = mustJSON(msgJSON{Type: "msg", ID: e.ID, Time: fmtTime(now), User: c.user(), Text: text, Ref: in.Ref})
	ctx, cancel := context.WithTimeout(c.s.ctx, 3*time.Second)
	err := c.s.bus.Publish(ctx, c.room.name, e, o.HistoryLen)
	cancel()
	var re *RestrictedError
	switch {
	case errors.As(err, &re):
		c.failRestricted(re, in.Ref, now)
	case err != nil:
		c.s.log.Warn("chat: publishing a message failed", "room", c.room.name, "err", err)
		c.fail(codeUnavailable, "message not accepted, try again", in.Ref, time.Second)
	default:
		c.s.metrics.messages.Add(1)
	}
}

func (c *Client) failRestricted(re *RestrictedError, ref string, now time.Time) {
	if re.Ban {
		c.fail(codeBanned, "you are banned from this room", ref, 0)
		return
	}
	c.fail(codeTimedOut, "you are timed out", ref, re.Until.Sub(now))
}

func (c *Client) moderate(in *inMsg) {
	o := &c.s.opts
	room := c.room.name
	ctx, cancel := context.WithTimeout(c.s.ctx, 3*time.Second)
	defer cancel()
	var e *Event
	var err error
	switch in.Type {
	case "delete":
		if in.ID == "" {
			c.fail(codeBadRequest, "delete needs an id", in.Ref, 0)
			return
		}
		e = &Event{Kind: KindDeleted, ID: in.ID, Body: mustJSON(modJSON{Type: KindDeleted, ID: in.ID})}
	case "timeout", "ban":
		if in.User == "" {
			c.fail(codeBadRequest, in.Type+" needs a user", in.Ref, 0)
			return
		}
		x := Restriction{UID: in.User, IPTag: c.room.ipTagOf(in.User)}
		body := modJSON{Type: in.Type, User: in.User, Reason: truncate(in.Reason, 200)}
		e = &Event{Kind: in.Type, UID: x.UID, IPTag: x.IPTag}
		if in.Type == "timeout" {
			// Checked before multiplying: a huge count would overflow into any duration.
			if in.Seconds < 0 || in.Seconds > int64(maxTimeout/time.Second) {
				c.fail(codeBadRequest, fmt.Sprintf("seconds must be between 1 and %d (0: %d)",
					int64(maxTimeout/time.Second), int64(defaultTimeout/time.Second)), in.Ref, 0)
				return
			}
			d := time.Duration(in.Seconds) * time.Second
			if d == 0 {
				d = defaultTimeout
			}
			x.Until = time.Now().Add(d)
			body.Seconds, body.Until = int64(d/time.Second), fmtTime(x.Until)
			e.Until = x.Until.UnixMilli()
		}
		e.Body = mustJSON(body)
		err = c.s.bus.Restrict(ctx, room, x)
	case "unban":
		if in.User == "" {
			c.fail(codeBadRequest, "unban needs a user", in.Ref, 0)
			return
		}
		var tag string
		tag, err = c.s.bus.Unrestrict(ctx, room, in.User)
		e = &Event{Kind: KindUnban, UID: in.User, IPTag: tag, Body: mustJSON(modJSON{Type: KindUnban, User: in.User})}
	}
	if err == nil {
		err = c.s.bus.Publish(ctx, room, e, o.HistoryLen)
	}
	if err != nil {
		c.s.log.Warn("chat: moderation action failed", "room", room, "action", in.Type, "err", err)
		c.fail(codeUnavailable, "action failed, try again", in.Ref, time.Second)
		return
	}
	c.s.metrics.modActions.Add(1)
	c.s.log.Info("chat: moderation", "room", room, "action", in.Type, "by", c.id, "target", e.UID+e.ID)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
