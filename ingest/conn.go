package ingest

import (
	"context"
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

// conn is an accepted RTMP connection: it enforces an idle deadline on reads,
// counts bytes, and remembers why it was closed.
type conn struct {
	nc      net.Conn
	hub     *Hub
	tracked bool   // counted in hub.conns / connWG
	ip      string // remote IP, counted in hub.connsBy while tracked

	idle      atomic.Int64 // current idle timeout (ns)
	deadline  time.Time    // last read deadline set; touched by the reader goroutine only
	closeOnce sync.Once

	mu     sync.Mutex
	reason string // why we closed it, if we did
}

func newConn(nc net.Conn, h *Hub) *conn {
	c := &conn{nc: nc, hub: h}
	c.idle.Store(int64(idleBeforePublish))
	return c
}

// setIdle changes how long a read may wait for data before the connection is dropped.
func (c *conn) setIdle(d time.Duration) {
	c.idle.Store(int64(d))
	c.deadline = time.Time{} // re-arm on the next read
}

func (c *conn) Read(p []byte) (int, error) {
	// Moving the deadline at most every 500 ms keeps the syscall off the hot path.
	now := time.Now()
	idle := time.Duration(c.idle.Load())
	if c.deadline.IsZero() || c.deadline.Sub(now) < idle-500*time.Millisecond {
		c.deadline = now.Add(idle)
		_ = c.nc.SetReadDeadline(c.deadline)
	}
	n, err := c.nc.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.setReason("no data for " + idle.String())
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.nc.Write(p)
}

// Close closes the connection once; later calls do nothing.
func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.nc.Close()
		c.hub.connClosed(c)
	})
	return err
}

// kill closes the TCP connection with a reason; the read loop then ends.
func (c *conn) kill(reason string) {
	c.setReason(reason)
	_ = c.nc.Close()
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
