package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

type ioRWC = io.ReadWriteCloser

// conn is an accepted RTMP connection as go-rtmp reads it: it passes the bytes
// through the chunk guard, holds a pre-publish connection to an absolute
// deadline, enforces an idle deadline on reads, and remembers why it was closed.
type conn struct {
	nc      net.Conn  // what RTMP is read from and written to: the TCP or the TLS connection
	tcp     net.Conn  // the TCP connection, closed without waiting on the peer
	tls     *tls.Conn // nc, for an RTMPS connection
	hub     *Hub
	guard   *chunkGuard
	tracked bool   // counted in hub.conns / connWG
	ip      string // remote IP
	key     string // remote IP, or its /64; counted in hub.connsBy while tracked

	accepted time.Time

	// Touched by the reader goroutine only.
	hello     []byte    // the client's C0 and C1, read before go-rtmp started, still to pass on
	publishBy time.Time // accept + publish timeout; zero once a publish succeeded
	deadline  time.Time // last read deadline set

	idle       atomic.Int64 // current idle timeout (ns)
	prePublish atomic.Bool  // counted in the pre-publish gauge
	closeOnce  sync.Once

	mu     sync.Mutex
	reason string // why we closed it, if we did
}

func newConn(nc net.Conn, h *Hub) *conn {
	c := &conn{nc: nc, tcp: nc, hub: h, guard: newChunkGuard(), ip: remoteIP(nc)}
	if tc, ok := nc.(*tls.Conn); ok {
		c.tls, c.tcp = tc, tc.NetConn()
	}
	c.key = addrKey(c.ip)
	c.accepted = time.Now()
	c.publishBy = c.accepted.Add(h.opts.PublishTimeout)
	c.idle.Store(int64(idleBeforePublish))
	return c
}

// published lifts the pre-publish limits once a publish succeeded: the publish
// deadline, the small buffering budget. Called on the reader goroutine.
func (c *conn) published() {
	c.hub.stats.publishIn.observe(time.Since(c.accepted))
	c.publishBy = time.Time{}
	c.guard.published = true
	c.setIdle(c.hub.opts.IdleTimeout)
	if c.prePublish.CompareAndSwap(true, false) {
		c.hub.stats.prePublish.Add(-1)
	}
}

// setIdle changes how long a read may wait for data before the connection is dropped.
func (c *conn) setIdle(d time.Duration) {
	c.idle.Store(int64(d))
	c.deadline = time.Time{} // re-arm on the next read
}

// awaitHello reads the client's C0 and C1, within the publish deadline.
func (c *conn) awaitHello() error {
	_ = c.nc.SetReadDeadline(c.publishBy)
	hello := make([]byte, 1+1536)
	if _, err := io.ReadFull(c.nc, hello); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.timedOut()
		}
		return err
	}
	c.hello = hello
	return nil
}

// Read reads what go-rtmp may see of the connection: the chunk guard checks
// (and may rewrite) every byte after the handshake first.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.hello) > 0 {
		n := copy(p, c.hello)
		c.hello = c.hello[n:]
		if len(c.hello) == 0 {
			c.hello = nil
		}
		return c.guard.filter(p[:n]) // all handshake: passed as it is, and counted
	}
	for {
		k := 0
		if h := c.guard.pending(); len(h) > 0 {
			if len(p) < len(h) {
				return 0, io.ErrShortBuffer // go-rtmp reads through a large bufio.Reader: never happens
			}
			k = copy(p, h)
		}
		c.armDeadline()
		n, err := c.nc.Read(p[k:])
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			c.timedOut()
		}
		m, gerr := c.guard.filter(p[:k+n])
		if gerr != nil {
			c.refuse(gerr)
			return 0, gerr
		}
		if m > 0 || err != nil {
			return m, err
		}
	}
}

// armDeadline moves the read deadline: idle time from now, but never past the
// publish deadline. Moving it at most every 500 ms keeps the syscall off the hot path.
func (c *conn) armDeadline() {
	target := time.Now().Add(time.Duration(c.idle.Load()))
	if !c.publishBy.IsZero() && target.After(c.publishBy) {
		target = c.publishBy
	}
	if c.deadline.IsZero() || target.Sub(c.deadline) > 500*time.Millisecond {
		c.deadline = target
		_ = c.nc.SetReadDeadline(target)
	}
}

func (c *conn) timedOut() {
	if !c.publishBy.IsZero() && !time.Now().Before(c.publishBy) {
		c.hub.stats.refuse("publish_timeout")
		c.hub.refusals.warn("publish_timeout", "rtmp connection closed: no publish in time",
			"remote", c.ip, "limit", c.hub.opts.PublishTimeout)
		c.setReason("no publish within " + c.hub.opts.PublishTimeout.String())
		return
	}
	c.setReason("no data for " + time.Duration(c.idle.Load()).String())
}

// refuse closes the connection for a chunk stream the guard refused.
func (c *conn) refuse(err error) {
	v, ok := err.(*violation)
	if !ok {
		v = &violation{reason: violChunkHeader, detail: err.Error()}
	}
	c.hub.stats.violation(v.reason)
	c.hub.refusals.warn("violation_"+v.reason, "rtmp connection refused: "+v.detail,
		"remote", c.ip, "reason", v.reason, "published", c.guard.published)
	c.kill("protocol violation: " + v.detail)
}

func (c *conn) Write(p []byte) (int, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.nc.Write(p)
}

// Close closes the connection once; later calls do nothing. An RTMPS
// connection is closed without TLS's close_notify alert: sending it may wait
// seconds on a peer that does not read, and RTMP has its own goodbyes.
func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.tcp.Close()
		c.hub.connClosed(c)
	})
	return err
}

// kill closes the TCP connection with a reason; the read loop then ends.
func (c *conn) kill(reason string) {
	c.setReason(reason)
	_ = c.tcp.Close()
}

func (c *conn) setReason(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == "" {
		c.reason = r
	}
}

func (c *conn) why() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// newRTMPLogger gives go-rtmp a logger that discards its per-state-change info
// chatter and forwards only its warnings and errors, at debug level: we log
// what matters ourselves.
func newRTMPLogger(log *slog.Logger) logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	l.Level = logrus.WarnLevel
	l.AddHook(slogHook{log: log})
	return l
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h slogHook) Fire(e *logrus.Entry) error {
	h.log.Log(context.Background(), slog.LevelDebug, "go-rtmp: "+e.Message)
	return nil
}
