package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Publisher states.
const (
	stateWaiting    int32 = iota // not started yet (ramp)
	stateConnecting              // dialled, publish not confirmed yet
	stateLive                    // confirmed, sending media
	stateRefused                 // the server answered with an error status
	stateFailed                  // no confirmation: connection error or timeout
	stateDropped                 // disconnected after confirmation
	stateDone                    // stopped by us at the end of the run
)

// maxBatch bounds the messages of one batch (one writev); its headers
// live in a buffer sized for it.
const maxBatch = 64

// publisher is one RTMP publishing connection. Its reader goroutine
// dials, publishes and then drains the server's messages; once live, its
// writes belong to one scheduler shard.
type publisher struct {
	index         int
	name, channel string
	media         *Media
	state         atomic.Int32

	// Set by the reader goroutine before the publisher is handed to a shard.
	s      *session
	w      *nbWriter
	dialAt time.Time
	t0     time.Time // schedule origin: when the publish was confirmed

	// Owned by the shard.
	startSent bool
	loop      uint64 // loops completed
	next      int    // index into media.loop
	hdr       []byte // headers of the current batch
	pendBuf   [][]byte
	pending   [][]byte      // the current batch's bytes not written yet
	batchDue  time.Duration // when the current batch's first message was due
	ctrlOut   []byte

	ctrlMu sync.Mutex
	ctrl   []byte // control answers queued by the reader, whole messages

	// Results.
	confirm  atomic.Int64 // ns from dial to Publish.Start
	sent     atomic.Int64 // bytes written after confirmation
	maxLate  atomic.Int64 // ns behind schedule, less the scheduler's own delay
	lateMsgs atomic.Int64 // messages sent more than Options.LateAfter behind (likewise)
	mu       sync.Mutex
	status   Status // the refusal, or an error status seen while live
	errText  string
	endedAt  time.Time
}

// run dials, publishes, hands the publisher to its shard and reads the
// server's messages until the connection ends. It is the publisher's one
// goroutine.
func (p *publisher) run(ctx context.Context, r *Run, sh *shard) {
	p.state.Store(stateConnecting)
	p.dialAt = time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.opts.ConfirmTimeout)
	s, err := dialPublish(cctx, r.target, p.name, r.media.chunkSize)
	cancel()
	if err != nil {
		var ref *refusedError
		switch {
		case errors.As(err, &ref):
			p.finish(stateRefused, ref.status, "")
		case ctx.Err() != nil:
			p.finish(stateDone, Status{}, "run ended before the publish was confirmed")
		case errors.Is(err, context.DeadlineExceeded):
			p.finish(stateFailed, Status{}, fmt.Sprintf("no publish confirmation within %v", r.opts.ConfirmTimeout))
		default:
			p.finish(stateFailed, Status{}, describe(err))
		}
		return
	}
	p.t0 = time.Now()
	p.confirm.Store(int64(p.t0.Sub(p.dialAt)))
	if err := p.attach(s); err != nil {
		s.nc.Close()
		p.finish(stateFailed, Status{}, err.Error())
		return
	}
	p.state.Store(stateLive)
	if !sh.add(p) { // confirmed just as the run ended
		p.stop()
		return
	}
	p.read(ctx, r)
}

// attach takes over a confirmed session for sending media.
func (p *publisher) attach(s *session) error {
	w, err := newNBWriter(s.nc)
	if err != nil {
		return err
	}
	p.s, p.w = s, w
	// Sized so that a batch's headers never move while writev points at them.
	p.hdr = make([]byte, 0, (maxBatch+len(p.media.start))*16)
	p.pendBuf = make([][]byte, 0, 2*(maxBatch+len(p.media.start))+1)
	return nil
}

// read drains the server's messages while live: control answers are
// queued for the shard, an error status is kept as the drop reason.
func (p *publisher) read(ctx context.Context, r *Run) {
	for {
		m, err := p.s.cr.next()
		if err != nil {
			if ctx.Err() != nil || p.state.Load() != stateLive {
				return // we closed it
			}
			p.finish(stateDropped, Status{}, describe(err))
			p.s.nc.Close()
			return
		}
		vals, isCmd := p.s.handle(m)
		if len(p.s.out) > 0 {
			p.ctrlMu.Lock()
			p.ctrl = append(p.ctrl, p.s.out...)
			p.ctrlMu.Unlock()
			p.s.out = p.s.out[:0]
		}
		if isCmd && vals[0] == "onStatus" {
			if st := statusOf(vals); st.Level == "error" {
				p.mu.Lock()
				p.status = st
				p.mu.Unlock()
			}
		}
	}
}

// describe turns a connection error into a short reason.
func describe(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}

// finish records how the publisher ended; the first end wins.
func (p *publisher) finish(state int32, st Status, text string) {
	for {
		old := p.state.Load()
		if old >= stateRefused {
			return
		}
		if p.state.CompareAndSwap(old, state) {
			break
		}
	}
	p.mu.Lock()
	if st.Code != "" {
		p.status = st
	}
	if text != "" {
		p.errText = text
	}
	p.endedAt = time.Now()
	p.mu.Unlock()
}

// service runs on the publisher's shard at every tick: it finishes the
// last batch if the socket took only part of it, then writes the control
// answers and every message that has come due, in batches, until the
// socket is full or the publisher has caught up. lag is how late the tick
// itself came: the load tool's own delay, which is not the server's doing
// and is left out of the publisher's lateness.
func (p *publisher) service(now time.Time, lag, lateAfter time.Duration) bool {
	if p.state.Load() != stateLive {
		return false
	}
	el := now.Sub(p.t0)
	oldest := p.dueOf(p.next) // the oldest message not written yet
	if len(p.pending) > 0 {
		oldest = p.batchDue
	}
	if behind := el - oldest - lag; behind > time.Duration(p.maxLate.Load()) {
		p.maxLate.Store(int64(behind))
	}
	for round := 0; ; round++ {
		if len(p.pending) > 0 && !p.flush() {
			break // the server has not taken the last batch yet
		}
		if round == maxRounds || !p.gather(el, lag, lateAfter) {
			break
		}
	}
	return p.state.Load() == stateLive
}

// maxRounds bounds the batches one publisher writes in one tick, so that
// one publisher far behind cannot hold its shard up for long.
const maxRounds = 16

// gather starts a batch: control answers, the start messages once, and up
// to maxBatch messages due by el. It reports whether there is anything to send.
func (p *publisher) gather(el, lag, lateAfter time.Duration) bool {
	p.hdr, p.pending = p.hdr[:0], p.pendBuf[:0]
	p.ctrlMu.Lock()
	if len(p.ctrl) > 0 {
		p.ctrlOut = append(p.ctrlOut[:0], p.ctrl...)
		p.ctrl = p.ctrl[:0]
		p.pending = append(p.pending, p.ctrlOut)
	}
	p.ctrlMu.Unlock()
	if !p.startSent {
		p.startSent = true
		for _, m := range p.media.start {
			p.appendMsg(m, 0)
		}
	}
	p.batchDue = min(el, p.dueOf(p.next))
	loop := p.media.loop
	for range maxBatch {
		due := p.dueOf(p.next)
		if due > el {
			break
		}
		if el-due-lag > lateAfter {
			p.lateMsgs.Add(1)
		}
		p.appendMsg(loop[p.next], uint32(p.loop*uint64(p.media.loopDur))+loop[p.next].ts)
		if p.next++; p.next == len(loop) {
			p.next, p.loop = 0, p.loop+1
		}
	}
	return len(p.pending) > 0
}

// dueOf is when message i of the current loop is due, from t0.
func (p *publisher) dueOf(i int) time.Duration {
	ms := p.loop*uint64(p.media.loopDur) + uint64(p.media.loop[i].ts)
	return time.Duration(ms) * time.Millisecond
}

// appendMsg adds one message to the batch: a header of its own and the
// shared chunked body.
func (p *publisher) appendMsg(m prepared, ts uint32) {
	if ts >= extendedTS {
		// After 4.6 hours every chunk carries the extended timestamp: build it.
		p.pending = append(p.pending, appendMessage(nil, m.csid, m.typ, p.s.streamID, ts, m.payload, p.media.chunkSize))
		return
	}
	h := len(p.hdr)
	p.hdr = appendType0(p.hdr, m.csid, ts, len(m.payload), m.typ, p.s.streamID)
	p.pending = append(p.pending, p.hdr[h:], m.body)
}

// flush writes as much of the batch as the socket takes and reports
// whether all of it went.
func (p *publisher) flush() bool {
	n, err := p.w.write(p.pending)
	p.sent.Add(int64(n))
	for n > 0 {
		if n >= len(p.pending[0]) {
			n -= len(p.pending[0])
			p.pending = p.pending[1:]
		} else {
			p.pending[0] = p.pending[0][n:]
			n = 0
		}
	}
	for len(p.pending) > 0 && len(p.pending[0]) == 0 {
		p.pending = p.pending[1:]
	}
	if err != nil {
		p.finish(stateDropped, Status{}, describe(err))
		p.s.nc.Close()
		return false
	}
	return len(p.pending) == 0
}

// stop ends a live publisher at the end of the run: a clean unpublish when
// no message is half written, then close.
func (p *publisher) stop() {
	if p.s == nil || !p.state.CompareAndSwap(stateLive, stateDone) {
		return
	}
	p.mu.Lock()
	p.endedAt = time.Now()
	p.mu.Unlock()
	if len(p.pending) == 0 {
		// The reader goroutine owns p.s.out; this goroutine builds its own.
		b := p.s.appendCommand(nil, 0, "FCUnpublish", 6, nil, p.name)
		b = p.s.appendCommand(b, 0, "deleteStream", 7, nil, float64(p.s.streamID))
		_ = p.s.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = p.s.nc.Write(b)
	}
	p.s.nc.Close()
}
