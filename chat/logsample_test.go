package chat

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of refusals yields one log line per reason and period, saying how many were left out.
func TestLogSamplerBoundsLines(t *testing.T) {
	var buf bytes.Buffer
	l := newLogSampler(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond)
	for range 1000 {
		l.Warn("origin", "refused", "reason", "origin")
		l.Warn("upgrade_rate", "refused", "reason", "upgrade_rate")
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines:\n%s", n, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	l.Warn("origin", "refused", "reason", "origin")
	if !strings.Contains(buf.String(), "suppressed=999") {
		t.Fatalf("no count of the left-out lines:\n%s", buf.String())
	}
}
