package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Client is one WebSocket connection in a room. Its reader runs in the HTTP handler's
// goroutine; its writer is a goroutine the reader starts and waits for.
type Client struct {
	s     *Server
	room  *Room
	conn  *websocket.Conn
	id    string
	ip    string
	ipTag string
	lim   *Limiter // per connection
	ipLim *Limiter // shared by the IP's connections

	name string      // owned by the reader goroutine
	mod  atomic.Bool // read by the room when applying IP bans

	mu        sync.Mutex
	queue     []outItem
	queued    int // bytes in queue
	closeCode int // non-zero: writer sends this close frame and stops
	closeText string
	wake      chan struct{}
	stop      chan struct{} // closed when the reader is done
}

// outItem is one frame waiting to be written: shared and pre-encoded (pm) or this client's own.
type outItem struct {
	pm    *websocket.PreparedMessage
	data  []byte
	n     int
	track *atomic.Int64 // the room's count of broadcast frames not yet written, or nil
}

// done marks the item written or dropped.
func (it *outItem) done() {
	if it.track != nil {
		it.track.Add(-1)
	}
	*it = outItem{} // let the frame be collected
}

func newClient(s *Server, conn *websocket.Conn, ip, ipTag string, ipLim *Limiter) *Client {
	return &Client{
		s: s, conn: conn, id: newID("u_"), ip: ip, ipTag: ipTag, ipLim: ipLim,
		lim:  NewLimiter(s.opts.ConnMessages, s.opts.ConnWindow),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
}

func (c *Client) user() userJSON { return userJSON{ID: c.id, Name: c.name, Mod: c.mod.Load()} }

// enqueue adds an item to the outbound queue. A client whose queue would exceed its byte budget
// is cut off instead: the room never waits for a slow reader.
func (c *Client) enqueue(it outItem) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	if c.queued+it.n > c.s.opts.MaxQueueBytes {
		c.mu.Unlock()
		c.s.metrics.slowClosed.Add(1)
		c.closeWith(websocket.ClosePolicyViolation, reasonSlow)
		return
	}
	c.queue = append(c.queue, it)
	c.queued += it.n
	if it.track != nil {
		it.track.Add(1)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closeWith makes the writer drop what is queued, send a close frame and end the connection.
func (c *Client) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeText = code, reason
		c.dropQueueLocked()
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) dropQueueLocked() {
	for i := range c.queue {
		c.queue[i].done()
	}
	c.queue, c.queued = nil, 0
}

// writeLoop writes queued frames and pings until the connection ends.
func (c *Client) writeLoop() {
	var batch []outItem
	defer func() {
		c.mu.Lock()
		if c.closeCode == 0 {
			c.closeCode = -1 // gone: enqueue refuses from now on
		}
		c.dropQueueLocked()
		c.mu.Unlock()
		for i := range batch {
			batch[i].done()
		}
		c.conn.Close() // unblocks the reader when the writer gives up first
	}()
	ping := time.NewTicker(c.s.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.opts.WriteTimeout)); err != nil {
				return
			}
			continue
		case <-c.wake:
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		code, text := c.closeCode, c.closeText
		c.mu.Unlock()
		if code > 0 {
			c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			return
		}
		for i, it := range batch {
			c.conn.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
			var err error
			if it.pm != nil {
				err = c.conn.WritePreparedMessage(it.pm)
			} else {
				err = c.conn.WriteMessage(websocket.TextMessage, it.data)
			}
			if err != nil {
				return
			}
			c.mu.Lock()
			c.queued -= it.n
			c.mu.Unlock()
			batch[i].done()
		}
	}
}

// serve runs the connection: join the room, read until the client goes, then clean up.
func (c *Client) serve(channel, name, token string) {
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
		c.writeLoop()
	}()
	defer func() {
		room.remove(c)
		close(c.stop)
		<-writerDone
	}()

	// A name or token in the URL is a join before the welcome, so the welcome shows it.
	var joinErr []byte
	if token != "" {
		if c.s.isModToken(channel, token) {
			c.mod.Store(true)
		} else {
			joinErr = errorLine(codeBadToken, "invalid moderator token", "", 0)
		}
	}
	if name != "" {
		if n, code := checkName(name, &c.s.opts, c.mod.Load()); code != "" {
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

func (c *Client) send(line []byte) { c.enqueue(outItem{data: line, n: len(line)}) }

func (c *Client) fail(code, msg, ref string, retry time.Duration) {
	c.s.metrics.rejected(code)
	c.send(errorLine(code, msg, ref, retry))
}

func (c *Client) readLoop() {
	o := &c.s.opts
	c.conn.SetReadLimit(o.ReadLimit)
	c.conn.SetReadDeadline(time.Now().Add(o.PongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(o.PongWait))
	})
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.s.metrics.tooBig.Add(1)
			}
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
			in.Ref = in.Ref[:maxRefLen]
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
		if !c.mod.Load() {
			c.fail(codeForbidden, "moderators only", in.Ref, 0)
			return
		}
		c.moderate(in)
	default:
		c.fail(codeUnknownType, "unknown message type", in.Ref, 0)
	}
}

func (c *Client) join(in *inMsg) {
	mod := c.mod.Load()
	if in.Token != "" {
		if !c.s.isModToken(c.room.name, in.Token) {
			c.fail(codeBadToken, "invalid moderator token", in.Ref, 0)
			return
		}
		mod = true
	}
	name, code := checkName(in.Name, &c.s.opts, mod)
	if code != "" {
		c.fail(code, "display name not allowed", in.Ref, 0)
		return
	}
	c.name = name
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
			d := time.Duration(in.Seconds) * time.Second
			if d <= 0 {
				d = defaultTimeout
			}
			d = min(d, maxTimeout)
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
