package chat

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServerCollector checks the chat figures as Prometheus gathers them, and
// that their names pass promlint.
func TestServerCollector(t *testing.T) {
	o := DefaultOptions()
	o.Secret = []byte("0123456789abcdef0123456789abcdef")
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.metrics.messages.Add(4)
	s.metrics.conns.Add(2)
	s.metrics.fanout.observe(2 * time.Millisecond)
	s.metrics.refusedConn("origin")
	want := `
# HELP onair_chat_messages_total Chat messages accepted from this node's clients.
# TYPE onair_chat_messages_total counter
onair_chat_messages_total 4
# HELP onair_chat_connections Open chat WebSocket connections on this node.
# TYPE onair_chat_connections gauge
onair_chat_connections 2
# HELP onair_chat_bus_up 1 if the chat bus (Redis) is reachable.
# TYPE onair_chat_bus_up gauge
onair_chat_bus_up 1
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want), "onair_chat_messages_total",
		"onair_chat_connections", "onair_chat_bus_up"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(s, "onair_chat_refused_connections_total"); n != len(refusalReasons) {
		t.Errorf("%d refusal series, want one per reason (%d)", n, len(refusalReasons))
	}
	if n := testutil.CollectAndCount(s, "onair_chat_fanout_seconds"); n != 1 {
		t.Errorf("%d fan-out histograms, want 1", n)
	}
	problems, err := testutil.CollectAndLint(s)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
