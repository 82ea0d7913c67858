package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ServeTLS accepts RTMPS connections on ln: the same RTMP ingest as Serve,
// inside TLS with config (whose GetCertificate may hand out a renewed
// certificate from one handshake to the next; a connection keeps the one it
// began with). Each connection does its TLS handshake on its own goroutine,
// counted in the connection limits and bounded by the publish timeout, so a
// client that never finishes it holds a slot no longer than one that never
// publishes. A failed handshake is logged with what the client seems to
// have sent, e.g. plain RTMP. It closes ln; it returns nil when stopped by
// ctx or Shutdown.
func (h *Hub) ServeTLS(ctx context.Context, ln net.Listener, config *tls.Config) error {
	return h.serve(ctx, tls.NewListener(ln, config), "rtmps")
}

// handshakeTLS does an RTMPS connection's TLS handshake, within the publish
// deadline; a plain RTMP connection has none. On the connection's goroutine.
func (c *conn) handshakeTLS() error {
	if c.tls == nil {
		return nil
	}
	_ = c.tls.SetDeadline(c.publishBy)
	start := time.Now()
	err := c.tls.Handshake()
	if err == nil {
		_ = c.tls.SetWriteDeadline(time.Time{})
		st := c.tls.ConnectionState()
		c.hub.log.Debug("tls handshake done", "remote", c.ip, "took", time.Since(start).Round(time.Microsecond),
			"version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite), "sni", st.ServerName)
		return nil
	}
	if errors.Is(err, net.ErrClosed) {
		return err // closed on our side: a shutdown
	}
	reason, msg := tlsFailure(err)
	c.hub.stats.tlsFailed(reason)
	c.hub.refusals.warn("tls_"+reason, "TLS handshake failed: "+msg, "remote", c.ip, "err", err.Error())
	return err
}

// tlsFailure names why a handshake failed: a metric label and what the log says.
func tlsFailure(err error) (reason, msg string) {
	var rh tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &rh) && rh.RecordHeader[0] == 3:
		// RTMP's C0 is the version byte 3; a TLS record starts with 20 to 24.
		return "plain_rtmp", "client sent plain RTMP to the RTMPS port (it should use rtmps://, or rtmp:// on the RTMP port)"
	case errors.As(err, &rh):
		return "not_tls", "client sent something other than TLS"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout", "client did not finish the handshake within the publish timeout"
	case errors.As(err, &op) && op.Op == "remote error":
		return "client_alert", "the client gave up on the handshake (does it trust this server's certificate, and is it for the host name the client uses?)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "closed", "client closed the connection during the handshake"
	}
	return "error", "handshake refused"
}
