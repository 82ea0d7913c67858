package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/metricstest"
)

// takedown is one call to the test Enforcer.
type takedown struct {
	channel, reason string
	ban             time.Duration
	at              time.Time
}

// hub stands in for ingest's channel hub: it ends the feed on TakeDown.
type hub struct {
	mu    sync.Mutex
	feed  *ingest.Feed
	calls []takedown
	done  chan struct{}
}

func newHub() *hub { return &hub{done: make(chan struct{})} }

func (h *hub) TakeDown(channel, reason string, ban time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, takedown{channel, reason, ban, time.Now()})
	if len(h.calls) == 1 {
		close(h.done)
	}
	if h.feed != nil {
		h.feed.End(ingest.EndStopped, "")
	}
	return nil
}

func (h *hub) takedowns() []takedown {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]takedown(nil), h.calls...)
}

// run is one broadcast played into a Moderator at real-time pace.
type run struct {
	feed     *ingest.Feed
	received []time.Time // per access unit, when pushed
	pushed   int
	rejected int           // pushes the feed refused (it backed up)
	consumed time.Duration // how long Consume took to return after the feed ended
}

// play feeds c into m in real time (looping while loop is set) until the clip
// ends or the hub ends the feed. The feed holds one second: a Consume that
// waited on screening (a hook takes up to ScreenTimeout) would make it drop units.
func play(t *testing.T, m *Moderator, h *hub, c clip, channel string, loopFor time.Duration, during func(elapsed time.Duration)) *run {
	t.Helper()
	b := &ingest.Broadcast{ID: "b-" + channel, Channel: channel, Tracks: ingest.Tracks{Video: &c.track}, Started: time.Now()}
	const feedSize = 30 // one second at 30 fps
	r := &run{feed: ingest.NewFeed(feedSize, b.Tracks)}
	h.mu.Lock()
	h.feed = r.feed
	h.mu.Unlock()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		m.Consume(context.Background(), b, r.feed)
	}()
	start := time.Now()
	frame := time.Second / time.Duration(c.fps)
	total := len(c.aus)
	if loopFor > 0 {
		total = int(loopFor / frame)
	}
	clipDur := time.Duration(len(c.aus)) * frame
	for i := 0; i < total; i++ {
		select {
		case <-h.done:
			i = total
			continue
		default:
		}
		au := c.aus[i%len(c.aus)]
		au.DTS += time.Duration(i/len(c.aus)) * clipDur
		au.PTS += time.Duration(i/len(c.aus)) * clipDur
		if d := time.Until(start.Add(au.DTS)); d > 0 {
			time.Sleep(d)
		}
		au.Received = time.Now()
		r.received = append(r.received, au.Received)
		if !r.feed.Push(au) {
			r.rejected++
		}
		r.pushed++
		if during != nil {
			during(time.Since(start))
		}
	}
	ended := time.Now()
	r.feed.End(ingest.EndStopped, "")
	select {
	case <-consumed:
		r.consumed = time.Since(ended)
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return 10 s after the feed ended")
	}
	return r
}

// colourHook is a moderation webhook that blocks frames that are mostly one
// colour, the way a real classifier would: by decoding the image.
func colourHook(t *testing.T, secret string, delay time.Duration, ban int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !VerifySignature([]byte(secret), body, r.Header.Get(SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			t.Error("webhook request with a bad signature")
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for _, k := range []string{"channel", "broadcast_id", "keyframe_time", "received_at", "sent_at"} {
			if r.FormValue(k) == "" {
				t.Errorf("webhook request lacks %s", k)
			}
		}
		f, _, err := r.FormFile("frame")
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		img, _, err := image.Decode(f)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		share := dominantShare(img)
		answer := map[string]any{"action": "allow"}
		if share > 0.9 {
			answer = map[string]any{"action": "block", "reason": fmt.Sprintf("mostly one colour (%.0f%%)", share*100), "ban_seconds": ban}
		}
		json.NewEncoder(w).Encode(answer)
	}))
}

// dominantShare is the fraction of pixels close to the most common coarse colour.
func dominantShare(img image.Image) float64 {
	counts := map[[3]uint32]int{}
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[[3]uint32{r >> 13, g >> 13, bl >> 13}]++
			n++
		}
	}
	best := 0
	for _, c := range counts {
		best = max(best, c)
	}
	return float64(best) / float64(n)
}

// newModerator returns a Moderator that is closed when the test ends.
func newModerator(t testing.TB, opts Options) *Moderator {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestWebhookBlockTakesDown(t *testing.T) {
	for _, codec := range []ingest.Codec{ingest.CodecH264, ingest.CodecHEVC} {
		t.Run(string(codec), func(t *testing.T) {
			if codec == ingest.CodecHEVC && testing.Short() {
				t.Skip("slow")
			}
			// 3 s of test pattern, then a red screen; a keyframe every second.
			c := encodeClip(t, "testsrc2=s=640x360:r=30:d=3[a];color=c=red:s=640x360:r=30:d=3[b];[a][b]concat=n=2:v=1", codec, 30, 30)
			// The keyframe at 3 s, in decode order (B-frames put it a little earlier).
			firstRed := -1
			for i := 3*30 - 5; i < len(c.aus) && firstRed < 0; i++ {
				if c.aus[i].Key {
					firstRed = i
				}
			}
			if firstRed < 0 || firstRed > 3*30 {
				t.Fatalf("no keyframe at 3 s (found %d)", firstRed)
			}
			const secret = "s3cret"
			srv := colourHook(t, secret, 0, 30)
			defer srv.Close()
			h := newHub()
			var onTakedown atomic.Value
			opts := DefaultOptions()
			opts.Interval = time.Second
			// The latency measured is keyframe → verdict → takedown: the bad
			// part starts on a keyframe. (With frames between keyframes, the
			// first bad frame screened is a random point of the next second.)
			opts.Sample = SampleKeyframes
			opts.WebhookURL, opts.WebhookSecret = srv.URL, secret
			opts.Enforcer = h
			opts.OnTakedown = func(ch, id, reason string) { onTakedown.Store(ch + "|" + id + "|" + reason) }
			opts.Logger = quietLogger()
			m := newModerator(t, opts)
			var clearedAt time.Duration
			var thumbSeen bool
			r := play(t, m, h, c, "red", 0, func(el time.Duration) {
				if clearedAt == 0 && m.Cleared("red") {
					clearedAt = el
				}
				if _, _, ok := m.Thumbnail("red"); ok {
					thumbSeen = true
				}
			})
			m.Close()
			calls := h.takedowns()
			if len(calls) != 1 {
				t.Fatalf("TakeDown called %d times, want 1", len(calls))
			}
			td := calls[0]
			if td.channel != "red" || !strings.Contains(td.reason, "mostly one colour") || td.ban != 30*time.Second {
				t.Errorf("TakeDown(%q, %q, %v), want red, mostly one colour, 30s", td.channel, td.reason, td.ban)
			}
			if got, _ := onTakedown.Load().(string); got != "red|b-red|"+td.reason {
				t.Errorf("OnTakedown got %q", got)
			}
			if len(r.received) <= firstRed {
				t.Fatalf("taken down before the red keyframe was sent")
			}
			latency := td.at.Sub(r.received[firstRed])
			t.Logf("%s: bad keyframe received -> TakeDown: %v (gate cleared after %v; Consume returned %v after feed end)", codec, latency.Round(time.Millisecond), clearedAt.Round(time.Millisecond), r.consumed.Round(time.Millisecond))
			if latency > time.Second {
				t.Errorf("takedown %v after the bad keyframe, want < 1 s", latency)
			}
			if clearedAt == 0 || clearedAt > 2*time.Second {
				t.Errorf("gate cleared at %v, want within 2 s of the start", clearedAt)
			}
			if !thumbSeen {
				t.Error("no thumbnail while the broadcast was good")
			}
			if r.feed.Dropped() > 0 {
				t.Errorf("feed dropped %d units: Consume fell behind", r.feed.Dropped())
			}
			if m.Cleared("red") {
				t.Error("Cleared after takedown")
			}
			evs := m.Events("red")
			if len(evs) != 1 || evs[0].Action != Block || evs[0].Screener != "webhook" || evs[0].Ban != 30*time.Second {
				t.Errorf("events %+v", evs)
			}
			var sb strings.Builder
			metricstest.Write(&sb, m)
			for _, want := range []string{`onair_moderation_verdicts_total{action="block"} 1`, `onair_moderation_takedowns_total{by="webhook"} 1`, "onair_moderation_screening_seconds_count "} {
				if !strings.Contains(sb.String(), want) {
					t.Errorf("metrics lack %q:\n%s", want, sb.String())
				}
			}
		})
	}
}

func TestFailingHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := encodeClip(t, "testsrc2=s=640x360:r=30:d=2", ingest.CodecH264, 30, 15)
	slow := colourHook(t, "k", 10*time.Second, 0)
	t.Cleanup(slow.Close)
	status500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(status500.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"action": "maybe"`)
	}))
	t.Cleanup(garbage.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + ln.Addr().String()
	ln.Close()

	hooks := []struct{ name, url, ffmpeg string }{
		{"slow-10s", slow.URL, ""},
		{"status-500", status500.URL, ""},
		{"garbage", garbage.URL, ""},
		{"unreachable", unreachable, ""},
		{"no-ffmpeg", status500.URL, "/nonexistent/ffmpeg"},
	}
	const failureAfter = 2 * time.Second
	for _, hk := range hooks {
		for _, policy := range []FailurePolicy{FailOpen, FailClosed} {
			t.Run(hk.name+"/"+string(policy), func(t *testing.T) {
				t.Parallel()
				h := newHub()
				opts := DefaultOptions()
				opts.Interval = 500 * time.Millisecond
				opts.ScreenTimeout = time.Second
				opts.FailureAfter = failureAfter
				opts.FailurePolicy = policy
				opts.WebhookURL, opts.WebhookSecret = hk.url, "k"
				opts.FFmpegPath = hk.ffmpeg
				opts.Enforcer = h
				opts.Logger = quietLogger()
				m := newModerator(t, opts)
				if (m.Check() != nil) != (hk.ffmpeg != "") {
					t.Errorf("Check() = %v", m.Check())
				}
				var clearedAt time.Duration
				r := play(t, m, h, c, "ch", 5*time.Second, func(el time.Duration) {
					if clearedAt == 0 && m.Cleared("ch") {
						clearedAt = el
					}
				})
				m.Close()
				calls := h.takedowns()
				if r.feed.Dropped() > 0 {
					t.Errorf("feed dropped %d units: Consume fell behind", r.feed.Dropped())
				}
				if r.consumed > time.Second {
					t.Errorf("Consume returned %v after the feed ended", r.consumed)
				}
				switch policy {
				case FailOpen:
					if len(calls) != 0 {
						t.Errorf("policy open took the broadcast down: %+v", calls)
					}
					// Gate on: shut until failures lasted failureAfter, then open.
					if clearedAt < failureAfter || clearedAt > failureAfter+policySlack {
						t.Errorf("cleared at %v, want soon after %v", clearedAt, failureAfter)
					}
					var sb strings.Builder
					metricstest.Write(&sb, m)
					if !strings.Contains(sb.String(), "onair_moderation_fail_open_total 1") {
						t.Errorf("fail-open not counted:\n%s", sb.String())
					}
				case FailClosed:
					if len(calls) != 1 || calls[0].reason != ReasonUnavailable || calls[0].ban != 0 {
						t.Fatalf("takedowns %+v, want one with %q", calls, ReasonUnavailable)
					}
					after := calls[0].at.Sub(r.received[0])
					if after < failureAfter || after > failureAfter+policySlack {
						t.Errorf("taken down %v after the start, want soon after %v", after, failureAfter)
					}
					if clearedAt != 0 {
						t.Errorf("cleared at %v under policy closed", clearedAt)
					}
				}
				t.Logf("cleared at %v, takedowns %d, Consume returned %v after feed end, %d units pushed, 0 dropped", clearedAt.Round(time.Millisecond), len(calls), r.consumed.Round(time.Millisecond), r.pushed)
			})
		}
	}
}

func TestGate(t *testing.T) {
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=2", ingest.CodecH264, 30, 30)
	hook := colourHook(t, "k", 700*time.Millisecond, 0)
	t.Cleanup(hook.Close)
	cases := []struct {
		name      string
		gate      bool
		webhook   string
		wantEarly bool // Cleared in the first 500 ms
	}{
		{"gate on, screening", true, hook.URL, false},
		{"gate off", false, hook.URL, true},
		{"gate on, no screeners", true, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub()
			opts := DefaultOptions()
			opts.Gate = tc.gate
			opts.WebhookURL, opts.WebhookSecret = tc.webhook, "k"
			opts.Enforcer = h
			opts.Logger = quietLogger()
			m := newModerator(t, opts)
			if tc.gate && tc.webhook != "" && m.Cleared("gate") {
				t.Error("cleared before the broadcast started")
			}
			var early, late bool
			// 4 s: on a loaded machine starting ffmpeg alone may take a second.
			play(t, m, h, c, "gate", 4*time.Second, func(el time.Duration) {
				if el < 500*time.Millisecond && m.Cleared("gate") {
					early = true
				}
				if el > 3500*time.Millisecond && m.Cleared("gate") {
					late = true
				}
			})
			if early != tc.wantEarly {
				t.Errorf("cleared early = %v, want %v", early, tc.wantEarly)
			}
			if !late {
				t.Error("not cleared after the first verdict")
			}
		})
	}
}

func TestSamplerKeepsNewest(t *testing.T) {
	s := NewSampler(2 * time.Second)
	key := func(sec float64) ingest.AccessUnit {
		return ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, DTS: time.Duration(sec * float64(time.Second))}
	}
	steps := []struct {
		au             ingest.AccessUnit
		taken, replace bool
	}{
		{key(0), true, false},
		{ingest.AccessUnit{Kind: ingest.KindVideo, DTS: time.Second}, false, false},
		{key(1), false, false},   // within the interval
		{key(1.999), true, true}, // RTMP rounding: still due; replaces the unscreened first
		{key(3), false, false},   // too soon
		{key(4.2), true, true},   // newest replaces again
		{ingest.AccessUnit{Kind: ingest.KindAudio, Key: true, DTS: 9 * time.Second}, false, false},
	}
	for i, st := range steps {
		taken, replaced := s.Observe(st.au)
		if taken != st.taken || replaced != st.replace {
			t.Errorf("step %d: taken %v replaced %v, want %v %v", i, taken, replaced, st.taken, st.replace)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	au, err := s.Next(ctx)
	if err != nil || au.Target().DTS != 4200*time.Millisecond {
		t.Fatalf("Next = %v, %v; want the newest (4.2 s)", au.Target().DTS, err)
	}
	if _, err := s.Next(ctx); err == nil {
		t.Fatal("Next returned a second sample; the mailbox holds one")
	}
}

// TestHistoryOutlivesRestart: events recorded by one Moderator are there in
// the next one opened on the same file, the newest EventsPerChannel of each
// channel, and a line cut short by a crash is skipped.
func TestHistoryOutlivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moderation-events.jsonl")
	open := func() *Moderator {
		opts := DefaultOptions()
		opts.HistoryPath, opts.EventsPerChannel, opts.Logger = path, 3, quietLogger()
		m, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	for i := range 5 {
		m.Record(Event{Channel: "alice", Action: Block, Reason: fmt.Sprint("take ", i), Screener: "admin"})
	}
	m.Record(Event{Channel: "bob", Action: Flag, Reason: "look", Screener: "webhook"})
	m.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-12-01T00:00:00Z","channel":"alice","act`)
	f.Close()

	again := open()
	defer again.Close()
	var reasons []string
	for _, ev := range again.Events("alice") {
		reasons = append(reasons, ev.Reason)
	}
	if strings.Join(reasons, ",") != "take 2,take 3,take 4" {
		t.Errorf("alice's events after a restart: %q", reasons)
	}
	if evs := again.Events("bob"); len(evs) != 1 || evs[0].Action != Flag || evs[0].Time.IsZero() {
		t.Errorf("bob's events after a restart: %+v", evs)
	}
}
