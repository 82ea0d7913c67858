package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The public HTTP server's limits. Their defaults let a player on a slow link
// fetch a segment (2 MB at 1 Mbit/s takes 16 s) and let a blocking playlist
// request wait its three target durations, while a client that sends nothing,
// sends slowly or never reads is cut off. WebSocket chat is not bound by the
// read and write timeouts: an upgraded connection leaves net/http and chat
// keeps its own deadlines (pings, a write deadline per frame).
const (
	defaultHTTPHeaderTimeout  = 10 * time.Second
	defaultHTTPReadTimeout    = 30 * time.Second
	defaultHTTPWriteTimeout   = 60 * time.Second
	defaultHTTPIdleTimeout    = 120 * time.Second // longer than nginx's upstream keepalive_timeout (60 s)
	defaultHTTPMaxHeaderBytes = 32 << 10          // nginx's default large_client_header_buffers total
	defaultHTTPMaxConns       = 10000
)

// validateHTTP checks the HTTP server's settings; bad reports each problem.
func (c *Config) validateHTTP(bad func(key, format string, a ...any)) {
	for key, d := range map[string]time.Duration{
		"http-header-timeout": c.HTTPHeaderTimeout, "http-read-timeout": c.HTTPReadTimeout,
		"http-write-timeout": c.HTTPWriteTimeout, "http-idle-timeout": c.HTTPIdleTimeout,
	} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	if c.HTTPReadTimeout > 0 && c.HTTPReadTimeout < c.HTTPHeaderTimeout {
		bad("http-read-timeout", "must be at least http-header-timeout (%s): it covers the headers too", c.HTTPHeaderTimeout)
	}
	// A blocking playlist request waits up to three target durations, and a
	// target duration is at least the segment duration; the answer must still
	// be written after that.
	if min := 4 * c.HLSSegmentDuration; c.HTTPWriteTimeout > 0 && c.HLSSegmentDuration > 0 && c.HLSSegmentDuration <= math.MaxInt64/4 && c.HTTPWriteTimeout < min {
		bad("http-write-timeout", "must be at least 4 × hls-segment-duration (%s): a blocking playlist request may wait three target durations before it is answered", min)
	}
	if c.HTTPMaxHeaderBytes < 4<<10 || c.HTTPMaxHeaderBytes > 1<<20 {
		bad("http-max-header-bytes", "must be between 4096 and 1048576, got %d", c.HTTPMaxHeaderBytes)
	}
	if c.ShutdownDrain < 0 || c.ShutdownDrain > maxShutdownDrain {
		bad("shutdown-drain", "must be between 0s and %s (onair exits within 10s of SIGTERM), got %s", maxShutdownDrain, c.ShutdownDrain)
	}
	if c.HTTPMaxConns < 1 {
		bad("http-max-conns", "must be at least 1, got %d", c.HTTPMaxConns)
	}
}

// newHTTPServer returns the public HTTP server with the configured limits.
func newHTTPServer(cfg Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HTTPHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    cfg.HTTPMaxHeaderBytes,
		// net/http's own messages (a TLS handshake error, a bad request line) are
		// the client's doing: debug level, so a client cannot flood the log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// httpStats counts what the HTTP server's guards did, for /metrics.
type httpStats struct {
	open    atomic.Int64 // connections accepted and not yet closed (upgraded ones included)
	refused atomic.Int64 // connections refused at the cap
	panics  atomic.Int64 // handlers that panicked
}

// connLimitListener accepts at most max connections at once. Past the cap it
// still accepts, so clients are not left waiting in the kernel's backlog, but
// answers 503 and closes at once, without a goroutine or a read.
type connLimitListener struct {
	net.Listener
	max   int64
	stats *httpStats
	log   *slog.Logger
	// lastWarn is when a refusal was last logged (unix nanoseconds): one line a
	// minute at most, so a flood does not flood the log.
	lastWarn atomic.Int64
}

// refusal is the whole answer to a connection over the cap.
var refusal = func() []byte {
	const body = "too many connections; retry later\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

func newConnLimitListener(ln net.Listener, max int, stats *httpStats, log *slog.Logger) *connLimitListener {
	return &connLimitListener{Listener: ln, max: int64(max), stats: stats, log: log}
}

// Accept returns the next connection under the cap.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.stats.open.Add(1); n <= l.max {
			return &limitedConn{Conn: c, release: func() { l.stats.open.Add(-1) }}, nil
		}
		l.stats.open.Add(-1)
		l.stats.refused.Add(1)
		// A new socket's send buffer is empty, so this write does not wait; the
		// deadline is there in case it ever would.
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(refusal)
		c.Close()
		l.warnRefused(c.RemoteAddr())
	}
}

func (l *connLimitListener) warnRefused(addr net.Addr) {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(time.Minute) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("HTTP connection limit reached; refusing connections (logged once a minute; see onair_http_connections_refused_total)",
		"http_max_conns", l.max, "example_client", addr.String())
}

// limitedConn gives its slot back when closed, also after net/http handed it
// to chat as an upgraded WebSocket.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn exposes the socket, so chat can write to it without blocking.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the socket, as net/http does before closing a
// connection whose request body it did not read.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// guard wraps every HTTP answer: it sets the headers every answer carries and
// turns a handler's panic into an error log line with its stack and a closed
// connection, instead of net/http's debug-level line.
func guard(next http.Handler, stats *httpStats, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // a handler's deliberate abort
			}
			stats.panics.Add(1)
			log.Error("HTTP handler panicked; connection closed", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			// net/http closes the connection without logging again.
			panic(http.ErrAbortHandler)
		}()
		// No answer of onair is meant to be sniffed into another type.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
