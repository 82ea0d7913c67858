package ingest

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAddrKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		if got := addrKey(tt.in); got != tt.want {
			t.Errorf("addrKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAuthBackoff(t *testing.T) {
	b := newAuthBackoff(3, 8*time.Second)
	now := time.Unix(1000, 0)
	var got []time.Duration
	for range 8 {
		got = append(got, b.failed("a", now))
	}
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lockouts %v, want %v", got, want)
	}
	if left, locked := b.locked("a", now.Add(7*time.Second)); !locked || left != time.Second {
		t.Fatalf("locked = %v %v", left, locked)
	}
	if _, locked := b.locked("a", now.Add(8*time.Second)); locked {
		t.Fatal("still locked after the lockout")
	}
	if _, locked := b.locked("b", now); locked {
		t.Fatal("another address is locked")
	}
	b.succeeded("a")
	if d := b.failed("a", now); d != 0 {
		t.Fatalf("a success did not clear the failures: %v", d)
	}
	// Failures long ago are forgotten.
	for range 3 {
		b.failed("c", now)
	}
	if d := b.failed("c", now.Add(backoffForget+time.Second)); d != 0 {
		t.Fatalf("old failures counted: %v", d)
	}
	// The table stays bounded under a flood of addresses.
	for i := range 3 * backoffMaxEntries {
		b.failed(fmt.Sprint("flood", i), now)
	}
	if n := len(b.entries); n > backoffMaxEntries {
		t.Fatalf("%d entries", n)
	}
}

func TestLogSampler(t *testing.T) {
	logs := &syncBuffer{}
	s := logSampler{log: slog.New(slog.NewTextHandler(logs, nil))}
	for i := range 100 {
		s.warn("bad_key", "refused", "n", i)
	}
	s.warn("other", "other refused")
	if n := strings.Count(logs.String(), "msg=refused"); n != sampleBurst {
		t.Fatalf("%d lines for one reason, want %d", n, sampleBurst)
	}
	if !strings.Contains(logs.String(), "other refused") {
		t.Fatal("another reason was suppressed")
	}
	s.reasons["bad_key"].start = time.Now().Add(-sampleWindow) // the window passes
	s.warn("bad_key", "refused", "n", 100)
	if !strings.Contains(logs.String(), "n=100 suppressed_since_last=95") {
		t.Fatalf("the next line does not count what was left out:\n%s", logs.String())
	}
}

// A connection must publish within the publish timeout, however it trickles
// its bytes: each byte used to re-arm the idle deadline.
func TestPublishDeadline(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.PublishTimeout = 1500 * time.Millisecond })
	// Each case trickles one harmless byte every 300 ms.
	tests := []struct {
		name    string
		setup   func(r *rawClient)
		trickle []byte
	}{
		{"trickled handshake", func(r *rawClient) {}, handshakeC0C1()},
		{"connected, never publishing", func(r *rawClient) {
			r.handshake()
			if err := r.command(0, "connect", 1.0, map[string]any{"app": "live"}); err != nil {
				t.Fatal(err)
			}
		}, append(chunkHeader(0, 2, 0, 4, 3, 0), 0, 0, 0)}, // an acknowledgement that never ends
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, ts.addr, "")
			start := time.Now()
			tt.setup(r)
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				for i := range tt.trickle {
					if r.write(tt.trickle[i:i+1]) != nil {
						return
					}
					time.Sleep(300 * time.Millisecond)
				}
			}()
			if !r.closedWithin(4 * time.Second) {
				t.Fatal("the connection outlived the publish timeout")
			}
			if d := time.Since(start); d < 1400*time.Millisecond {
				t.Fatalf("closed after %v, before the timeout", d)
			}
			<-closed
		})
	}
	waitFor(t, "metric", time.Second, func() bool {
		return strings.Contains(ts.metrics(), `onair_ingest_refused_publishes_total{reason="publish_timeout"} 2`)
	})
}

// The global cap refuses connections beyond it whatever their address.
func TestMaxConns(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.MaxConns = 4; o.ConnsPerIP = 100 })
	var open []*rawClient
	for _, local := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		open = append(open, dialRaw(t, ts.addr, local))
	}
	waitFor(t, "four connections", 2*time.Second, func() bool {
		return strings.Contains(ts.metrics(), "onair_ingest_rtmp_connections 4") &&
			strings.Contains(ts.metrics(), "onair_ingest_prepublish_connections 4")
	})
	if !dialRaw(t, ts.addr, "127.0.0.5").closedWithin(time.Second) {
		t.Fatal("a fifth connection was accepted")
	}
	for _, r := range open {
		if r.closedWithin(50 * time.Millisecond) {
			t.Fatal("a connection under the cap was closed")
		}
	}
	if !strings.Contains(ts.metrics(), `onair_ingest_refused_publishes_total{reason="server_full"} 1`) {
		t.Fatalf("no refusal counted:\n%s", ts.metrics())
	}
}

// Refused keys from one address lock it out, with a growing delay; another
// address is untouched, and a publisher already live is never affected.
func TestAuthBackoffRefusesAtAccept(t *testing.T) {
	ts := startHub(t, func(o *Options) { o.AuthFailures = 3; o.AuthBackoffMax = time.Minute })
	for i := range 4 {
		r := dialRaw(t, ts.addr, "127.0.0.2").handshake()
		if err := r.connectPublish("live", "wrong-key"); err != nil {
			t.Fatal(err)
		}
		if !r.readUntil("invalid stream key", 3*time.Second) {
			t.Fatalf("attempt %d: no refusal", i)
		}
	}
	// Locked out now: the next connection is closed before its handshake.
	if !dialRaw(t, ts.addr, "127.0.0.2").closedWithin(time.Second) {
		t.Fatal("a locked-out address was accepted")
	}
	if !strings.Contains(ts.metrics(), `onair_ingest_refused_publishes_total{reason="auth_backoff"} 1`) {
		t.Fatalf("no lockout counted:\n%s", ts.metrics())
	}
	ok := dialRaw(t, ts.addr, "127.0.0.3").handshake()
	if err := ok.connectPublish("live", testKey); err != nil {
		t.Fatal(err)
	}
	if !ok.readUntil("NetStream.Publish.Start", 3*time.Second) {
		t.Fatal("another address was refused")
	}
}
