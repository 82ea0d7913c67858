package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/moderation"
)

const eventsSecret = "e2e-events-secret"

// sinkEvent is one event as the receiver got it.
type sinkEvent struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Channel     string    `json:"channel"`
	BroadcastID string    `json:"broadcast_id"`
	Seq         uint64    `json:"seq"`
	Time        time.Time `json:"time"`
	Reason      string    `json:"reason"`
	BanSeconds  float64   `json:"ban_seconds"`
	Tracks      *struct {
		Video *struct{ Codec string } `json:"video"`
	} `json:"tracks"`
	arrived time.Time
}

// eventSink is an events webhook receiver on a fixed local port that can be
// stopped (its listener and connections closed) and started again.
type eventSink struct {
	t    *testing.T
	addr string
	srv  *http.Server

	mu     sync.Mutex
	got    []sinkEvent
	bad    []string // requests that failed the signature check or did not parse
	posted int      // requests that reached the handler
}

func startSink(t *testing.T) *eventSink {
	k := &eventSink{t: t, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *eventSink) url() string { return "http://" + k.addr + "/onair-events" }

func (k *eventSink) start() {
	k.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may still be in use for a moment after stop
		if ln, err = net.Listen("tcp", k.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		k.t.Fatalf("receiver listen on %s again: %v", k.addr, err)
	}
	k.srv = &http.Server{Handler: k}
	go k.srv.Serve(ln)
}

func (k *eventSink) stop() { k.srv.Close() }

func (k *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	var ev sinkEvent
	err := moderation.VerifyTimedSignature([]byte(eventsSecret), body, r.Header.Get(moderation.TimedSignatureHeader), now, 0)
	if err == nil && !moderation.VerifySignature([]byte(eventsSecret), body, r.Header.Get(moderation.SignatureHeader)) {
		err = fmt.Errorf("body signature")
	}
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.posted++
	if err != nil || r.Header.Get("X-Onair-Event") != ev.Type {
		k.bad = append(k.bad, fmt.Sprintf("%v: %s", err, body))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	ev.arrived = now
	k.got = append(k.got, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (k *eventSink) events() []sinkEvent {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

// waitFor waits until n events arrived and returns them.
func (k *eventSink) waitFor(n int, timeout time.Duration, what string) []sinkEvent {
	k.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := k.events()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: %d events in %v, want %d: %s", what, len(got), timeout, n, describe(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describe(evs []sinkEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s#%d:%s", ev.Channel, ev.Seq, ev.Type))
	}
	return strings.Join(out, " ")
}

// checkSequence checks each channel's events: seq 1, 2, 3… in arrival
// order, no event twice.
func checkSequence(t *testing.T, evs []sinkEvent) {
	t.Helper()
	last := map[string]uint64{}
	ids := map[string]bool{}
	for _, ev := range evs {
		if ids[ev.ID] {
			t.Errorf("event %s arrived twice", ev.ID)
		}
		ids[ev.ID] = true
		if ev.Seq != last[ev.Channel]+1 {
			t.Errorf("channel %s: seq %d after %d: %s", ev.Channel, ev.Seq, last[ev.Channel], describe(evs))
		}
		last[ev.Channel] = ev.Seq
	}
}

var mediaSeqLine = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)

// mediaSequence reads the channel's media playlist's media sequence number (-1: none).
func mediaSequence(t *testing.T, url string) int {
	resp, body := Get(t, url)
	m := mediaSeqLine.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestEventsWebhook runs onair with an events webhook and a real receiver:
// a publish, a stop, a publish that drops and comes back, an admin takedown
// arrive signed and in order; then the receiver is down for 30 s while one
// channel goes live and off and another publishes throughout (its HLS keeps
// advancing), and once the receiver is back every event of those 30 s arrives,
// in order, none lost.
func TestEventsWebhook(t *testing.T) {
	needTools(t, "ffmpeg")
	const admin = "e2e-events-admin-token-0123"
	sink := startSink(t)
	mainKey := "test-key-" + strings.ToLower(t.Name())
	const sideKey = "side-key-0123456789"
	s := StartServer(t, "--events-webhook", sink.url(), "--events-webhook-secret", eventsSecret,
		"--events-retry-max", "5s", "--admin-token", admin,
		"--channel", "main:"+mainKey, "--channel", "side:"+sideKey)
	file := sharedSource(t, Source{Width: 320, Height: 240, FPS: 30, Seconds: 6})
	mainURL := s.RTMP + "/" + mainKey

	// Phase 1: the receiver is up.
	pub := Publish(t, file, mainURL, true)
	sink.waitFor(1, 15*time.Second, "publish_started")
	time.Sleep(time.Second)
	pub.Stop()
	sink.waitFor(2, 10*time.Second, "publish_stopped")
	pub = Publish(t, file, mainURL, true)
	sink.waitFor(3, 15*time.Second, "second publish_started")
	time.Sleep(time.Second)
	pub.Kill()
	sink.waitFor(4, 10*time.Second, "publisher_reconnecting")
	pub = Publish(t, file, mainURL, true)
	sink.waitFor(5, 15*time.Second, "publisher_returned")
	takeDown(t, s, admin, "main", 3)
	takenAt := time.Now()
	got := sink.waitFor(6, 10*time.Second, "taken_down")
	pub.Kill()
	time.Sleep(500 * time.Millisecond)
	got = sink.events()
	want := []string{"publish_started", "publish_stopped", "publish_started", "publisher_reconnecting", "publisher_returned", "taken_down"}
	var types []string
	for _, ev := range got {
		types = append(types, ev.Type)
	}
	if !slices.Equal(types, want) {
		t.Fatalf("events %s, want %v", describe(got), want)
	}
	checkSequence(t, got)
	if got[0].BroadcastID == "" || got[1].BroadcastID != got[0].BroadcastID || got[2].BroadcastID == got[0].BroadcastID ||
		got[3].BroadcastID != got[2].BroadcastID || got[5].BroadcastID != got[2].BroadcastID {
		t.Errorf("broadcast ids do not follow the broadcasts: %+v", got)
	}
	if got[0].Tracks == nil || got[0].Tracks.Video == nil || got[0].Tracks.Video.Codec != "h264" {
		t.Errorf("publish_started without its video track: %+v", got[0])
	}
	if got[1].Reason != "stopped" || got[5].Reason != "e2e ban" || got[5].BanSeconds != 3 {
		t.Errorf("reasons: stop %q, takedown %q ban %v", got[1].Reason, got[5].Reason, got[5].BanSeconds)
	}
	var lat []time.Duration
	for _, ev := range got {
		lat = append(lat, ev.arrived.Sub(ev.Time))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("event time -> receiver, receiver up: median %v, worst %v", lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))

	// Phase 2: the receiver is down for 30 s.
	time.Sleep(time.Until(takenAt.Add(3500 * time.Millisecond))) // the ban lapses
	sink.stop()
	down := time.Now()
	pub = Publish(t, file, mainURL, true)
	WaitHTTP(t, s.HTTP+"/hls/main/index.m3u8", 20*time.Second)
	media := mediaPlaylistURL(t, s.HTTP, "main")
	side := Publish(t, file, s.RTMP+"/"+sideKey, false) // 6 s, then it unpublishes
	var seqs []int
	for time.Since(down) < 26*time.Second {
		seqs = append(seqs, mediaSequence(t, media))
		time.Sleep(time.Second)
	}
	pub.Stop()
	if exited, _ := side.Wait(5 * time.Second); !exited {
		t.Error("the side publisher did not finish its 6 s file")
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			t.Fatalf("media sequence went back during the outage: %v", seqs)
		}
	}
	if len(seqs) < 20 || seqs[0] < 0 || seqs[len(seqs)-1]-seqs[0] < 15 {
		t.Fatalf("HLS did not keep advancing while the receiver was down: media sequence %v", seqs)
	}
	t.Logf("receiver down: main's media sequence went %d -> %d over %d s", seqs[0], seqs[len(seqs)-1], len(seqs))
	// The four events wait in onair's queue (the last one may take a moment
	// to pass the hub's observer queue).
	var metrics []byte
	for range 20 {
		_, metrics = Get(t, s.HTTP+"/metrics")
		if regexp.MustCompile(`(?m)^onair_events_queued 4$`).Match(metrics) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !regexp.MustCompile(`(?m)^onair_events_queued 4$`).Match(metrics) ||
		!regexp.MustCompile(`(?m)^onair_events_failed_attempts_total [1-9]`).Match(metrics) {
		t.Errorf("metrics during the outage:\n%s", grepLines(string(metrics), "onair_events_"))
	}
	time.Sleep(time.Until(down.Add(30 * time.Second)))
	sink.start()
	back := time.Now()
	all := sink.waitFor(10, 15*time.Second, "the events of the outage")
	t.Logf("receiver back: the %d events of its 30 s outage arrived %v after it returned",
		len(all)-6, all[len(all)-1].arrived.Sub(back).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	all = sink.events()
	outage := all[6:]
	if d := describe(outage); d != "main#7:publish_started side#1:publish_started side#2:publish_stopped main#8:publish_stopped" {
		t.Errorf("events of the outage: %s", d)
	}
	checkSequence(t, all)
	for _, ev := range outage {
		if !ev.Time.After(down) || !ev.Time.Before(back) {
			t.Errorf("event %s#%d happened at %v, outside the outage", ev.Channel, ev.Seq, ev.Time)
		}
	}
	sink.mu.Lock()
	if len(sink.bad) > 0 {
		t.Errorf("requests failing the signature check: %v", sink.bad)
	}
	sink.mu.Unlock()
	_, metrics = Get(t, s.HTTP+"/metrics")
	if !regexp.MustCompile(`(?m)^onair_events_delivered_total 10$`).Match(metrics) ||
		!regexp.MustCompile(`(?m)^onair_events_queued 0$`).Match(metrics) ||
		!strings.Contains(string(metrics), `onair_events_dropped_total{reason="overflow"} 0`) {
		t.Errorf("metrics after the outage:\n%s", grepLines(string(metrics), "onair_events_"))
	}
	t.Logf("metrics after the outage:\n%s", grepLines(string(metrics), "onair_events_"))
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
