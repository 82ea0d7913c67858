package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/metricstest"
	"github.com/onairhq/onair/moderation"
)

// The hub's and moderation's events reach the events webhook as the
// documented events, a takedown's end as its taken_down only; the metrics
// show the deliveries.
func TestEventsWebhookMapping(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := moderation.VerifyTimedSignature([]byte("evsecret"), body, r.Header.Get(moderation.TimedSignatureHeader), time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	defer recv.Close()
	cfg := defaultConfig()
	cfg.EventsWebhook, cfg.EventsSecret, cfg.Grace = recv.URL, "evsecret", 15*time.Second
	e, err := newEventsWebhook(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b := &ingest.Broadcast{ID: "b1", Channel: "main", Started: time.Now().Add(-time.Minute),
		Tracks: ingest.Tracks{Video: &ingest.VideoTrack{Codec: ingest.CodecH264, Width: 640, Height: 360},
			Audio: &ingest.AudioTrack{Codec: ingest.CodecAAC, SampleRate: 48000, Channels: 2}}}
	e.BroadcastStarted(b)
	e.PublisherLost(b, "publisher disconnected")
	e.PublisherReturned(b)
	e.flagged(moderation.Event{Time: time.Now(), Channel: "main", BroadcastID: "b1", Action: moderation.Flag,
		Reason: "looks odd", Screener: "webhook", KeyframeTime: 4 * time.Second})
	e.TakenDown("main", b, "bad stuff", 10*time.Minute)
	e.BroadcastEnded(b, ingest.EndTakenDown, "bad stuff")
	e.BroadcastEnded(&ingest.Broadcast{ID: "b2", Channel: "other", Started: time.Now()}, ingest.EndStopped, "publisher stopped")
	e.TakenDown("idle", nil, "spam", 0)
	e.close()

	want := []string{
		`type=publish_started channel=main broadcast_id=b1 seq=1 tracks=map[audio:map[channels:2 codec:aac sample_rate:48000] video:map[codec:h264 height:360 width:640]]`,
		`type=publisher_reconnecting channel=main broadcast_id=b1 seq=2 detail=publisher disconnected grace_seconds=15`,
		`type=publisher_returned channel=main broadcast_id=b1 seq=3`,
		`type=moderation_flag channel=main broadcast_id=b1 seq=4 reason=looks odd screener=webhook verdict=flag frame_time=4`,
		`type=taken_down channel=main broadcast_id=b1 seq=5 reason=bad stuff ban_seconds=600 duration_seconds=60 banned_until=set`,
		`type=publish_stopped channel=other broadcast_id=b2 seq=1 detail=publisher stopped reason=stopped`,
		`type=taken_down channel=idle seq=1 reason=spam`,
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d events delivered, want %d: %v", len(got), len(want), got)
	}
	keys := []string{"type", "channel", "broadcast_id", "seq", "tracks", "detail", "grace_seconds", "reason",
		"screener", "verdict", "frame_time", "ban_seconds", "duration_seconds", "banned_until"}
	for i, ev := range got {
		var parts []string
		for _, k := range keys {
			v, ok := ev[k]
			if !ok {
				continue
			}
			switch k {
			case "banned_until":
				v = "set"
			case "duration_seconds":
				v = int(v.(float64)+0.5) / 10 * 10 // 60 s, give or take the test's run time
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
		if line := strings.Join(parts, " "); line != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, line, want[i])
		}
		if ev["id"] == "" || ev["time"] == nil {
			t.Errorf("event %d lacks id or time: %v", i, ev)
		}
	}
	m := metricstest.Text(e.n)
	for _, line := range []string{"onair_events_delivered_total 7", `onair_events_dropped_total{reason="overflow"} 0`, "onair_events_queued 0"} {
		if !strings.Contains(m, line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, m)
		}
	}
	var none *eventsWebhook // no events-webhook: every call is a no-op
	none.BroadcastStarted(b)
	none.flagged(moderation.Event{})
	none.close()
}
