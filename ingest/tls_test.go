package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/testcert"
)

// serveTLS serves ts's hub on a second listener, over TLS with a throwaway
// certificate. The hub's Shutdown must stop it: served reports how it ended.
func serveTLS(t *testing.T, ts *testServer) (addr string, roots *x509.CertPool, served chan error) {
	t.Helper()
	certPEM, keyPEM := testcert.PEM(t, testcert.Spec{})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served = make(chan error, 1)
	go func() {
		served <- ts.hub.ServeTLS(context.Background(), ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}()
	return ln.Addr().String(), roots, served
}

// dialTLS connects a raw RTMP client over TLS and does the TLS handshake.
func dialTLS(t *testing.T, addr string, roots *x509.CertPool) (*rawClient, time.Duration) {
	t.Helper()
	r := dialRaw(t, addr, "")
	tc := tls.Client(r.c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	start := time.Now()
	tc.SetDeadline(start.Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	took := time.Since(start)
	tc.SetDeadline(time.Time{})
	r.c = tc
	return r, took
}

// RTMPS is the same ingest inside TLS, beside plain RTMP on the same hub: a
// publisher goes live over it; a plain RTMP client on the RTMPS port is
// closed at once with a clear log line; a client that never finishes the TLS
// handshake is held no longer than the publish timeout and does not keep
// others from connecting; Shutdown stops both listeners.
func TestRTMPS(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.PublishTimeout = 1500 * time.Millisecond })
	addr, roots, served := serveTLS(t, ts)

	// A client that connects and says nothing, and one that stops mid-ClientHello.
	silent := dialRaw(t, addr, "")
	stalled := dialRaw(t, addr, "")
	if err := stalled.write([]byte{22, 3, 1, 0, 200, 1}); err != nil {
		t.Fatal(err)
	}
	stallStart := time.Now()

	// A publisher over TLS meanwhile.
	r, took := dialTLS(t, addr, roots)
	t.Logf("TLS handshake on loopback took %v", took.Round(time.Microsecond))
	r.handshake()
	if err := r.setChunkSize(4096); err != nil {
		t.Fatal(err)
	}
	if err := r.connectPublish("live", testKey); err != nil {
		t.Fatal(err)
	}
	if !r.readUntil("NetStream.Publish.Start", 3*time.Second) {
		t.Fatal("no publish confirmation over RTMPS")
	}
	r.drain()
	if ch, ok := ts.hub.Channel("demo"); !ok || !ch.PublisherConnected {
		t.Fatalf("demo has no publisher: %+v", ch)
	}
	if m := ts.metrics(); !strings.Contains(m, "onair_ingest_rtmps_connections 3") {
		t.Fatalf("metrics: want 3 RTMPS connections (publisher, silent, stalled):\n%s", m)
	}

	// Plain RTMP to the RTMPS port.
	plain := dialRaw(t, addr, "")
	start := time.Now()
	if err := plain.write(handshakeC0C1()); err != nil {
		t.Fatal(err)
	}
	if !plain.closedWithin(2 * time.Second) {
		t.Fatal("a plain RTMP client on the RTMPS port was not closed")
	}
	t.Logf("plain RTMP on the RTMPS port closed after %v", time.Since(start).Round(time.Microsecond))
	waitFor(t, "log line", time.Second, func() bool {
		return strings.Contains(ts.logs.String(), "TLS handshake failed: client sent plain RTMP to the RTMPS port")
	})

	// The silent and stalled clients go at the publish timeout.
	for _, c := range []*rawClient{silent, stalled} {
		if !c.closedWithin(3 * time.Second) {
			t.Fatal("a client that never finished the TLS handshake outlived the publish timeout")
		}
	}
	if d := time.Since(stallStart); d < 1400*time.Millisecond {
		t.Fatalf("closed after %v, before the publish timeout", d)
	}
	waitFor(t, "metrics", time.Second, func() bool {
		m := ts.metrics()
		return strings.Contains(m, `onair_ingest_tls_handshake_failures_total{reason="plain_rtmp"} 1`) &&
			strings.Contains(m, `onair_ingest_tls_handshake_failures_total{reason="timeout"} 2`) &&
			strings.Contains(m, "onair_ingest_rtmps_connections 1")
	})
	if ch, _ := ts.hub.Channel("demo"); !ch.PublisherConnected {
		t.Fatal("the RTMPS publisher went down")
	}

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.hub.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeTLS: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown did not stop ServeTLS")
	}
}

func TestTLSFailureReasons(t *testing.T) {
	for _, tc := range []struct {
		send   []byte
		reason string
	}{
		{handshakeC0C1(), "plain_rtmp"},
		{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "not_tls"},
	} {
		server, client := net.Pipe()
		go func() { client.Write(tc.send); client.Close() }()
		err := tls.Server(server, &tls.Config{}).Handshake()
		if reason, _ := tlsFailure(err); reason != tc.reason {
			t.Errorf("%q: reason %s (err %v), want %s", tc.send[:4], reason, err, tc.reason)
		}
		server.Close()
	}
}
