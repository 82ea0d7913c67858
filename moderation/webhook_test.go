package moderation

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/onairhq/onair/ingest"
)

func TestParseAnswer(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	cases := []struct {
		name    string
		answer  string
		want    Verdict
		note    string // part of the note, "" for none
		wantErr string
	}{
		{"allow", `{"action":"allow"}`, Verdict{Action: Allow}, "", ""},
		{"flag with reason", `{"action":"flag","reason":"maybe"}`, Verdict{Action: Flag, Reason: "maybe"}, "", ""},
		{"block, ban", `{"action":"block","reason":"nudity","ban_seconds":3600}`, Verdict{Action: Block, Reason: "nudity", Ban: time.Hour}, "", ""},
		{"block, fractional ban", `{"action":"block","ban_seconds":1.5}`, Verdict{Action: Block, Ban: 1500 * time.Millisecond}, "", ""},
		{"block, tiny ban is a second", `{"action":"block","ban_seconds":1e-300}`, Verdict{Action: Block, Ban: time.Second}, "", ""},
		{"block, underflowing ban is a second", `{"action":"block","ban_seconds":1e-400}`, Verdict{Action: Block, Ban: time.Second}, "", ""},
		{"block, no ban", `{"action":"block"}`, Verdict{Action: Block}, "", ""},
		{"block, null ban", `{"action":"block","ban_seconds":null}`, Verdict{Action: Block}, "", ""},
		{"block, zero ban", `{"action":"block","ban_seconds":0e10}`, Verdict{Action: Block}, "", ""},
		{"block, negative zero", `{"action":"block","ban_seconds":-0.0}`, Verdict{Action: Block}, "", ""},
		{"block, ban beyond a Duration", `{"action":"block","ban_seconds":9.3e9}`, Verdict{Action: Block, Ban: math.MaxInt64}, "", ""},
		{"block, ban overflowing a float", `{"action":"block","ban_seconds":1e400}`, Verdict{Action: Block, Ban: math.MaxInt64}, "", ""},
		{"block, negative ban", `{"action":"block","ban_seconds":-60}`, Verdict{Action: Block}, "negative", ""},
		{"block, negative tiny ban", `{"action":"block","ban_seconds":-1e-400}`, Verdict{Action: Block}, "negative", ""},
		{"block, huge negative ban", `{"action":"block","ban_seconds":-1e400}`, Verdict{Action: Block}, "negative", ""},
		{"block, ban as a string", `{"action":"block","ban_seconds":"3600"}`, Verdict{Action: Block}, "not a number", ""},
		{"block, ban as an object", `{"action":"block","ban_seconds":{"s":1}}`, Verdict{Action: Block}, "not a number", ""},
		{"block, ban as true", `{"action":"block","ban_seconds":true}`, Verdict{Action: Block}, "not a number", ""},
		{"allow ignores a ban", `{"action":"allow","ban_seconds":-5}`, Verdict{Action: Allow}, "", ""},
		{"control characters in reason", "{\"action\":\"flag\",\"reason\":\"a\\nb\\u0000c\\u2028d\\u001b[31m\"}", Verdict{Action: Flag, Reason: "a b c d [31m"}, "", ""},
		{"long reason cut at a character", `{"action":"flag","reason":"` + long + `"}`, Verdict{Action: Flag, Reason: long[:maxReason]}, "", ""},
		{"unknown fields ignored", `{"action":"allow","score":0.2,"labels":["x"]}`, Verdict{Action: Allow}, "", ""},
		{"unknown action", `{"action":"maybe"}`, Verdict{}, "", "unknown action"},
		{"action case matters", `{"action":"BLOCK"}`, Verdict{}, "", "unknown action"},
		{"no action", `{"reason":"x"}`, Verdict{}, "", "unknown action"},
		{"action not a string", `{"action":1}`, Verdict{}, "", "parsing"},
		{"not JSON", `block`, Verdict{}, "", "parsing"},
		{"truncated", `{"action": "allow"`, Verdict{}, "", "parsing"},
		{"array", `["allow"]`, Verdict{}, "", "parsing"},
		{"trailing data", `{"action":"allow"} {"action":"block"}`, Verdict{}, "", "parsing"},
		{"too large", `{"action":"allow","reason":"` + strings.Repeat("x", maxAnswer) + `"}`, Verdict{}, "", "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, note, err := parseAnswer([]byte(tc.answer))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("verdict %+v, want %+v", v, tc.want)
			}
			if (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
				t.Errorf("note %q, want one containing %q", note, tc.note)
			}
		})
	}
}

// FuzzParseAnswer: whatever a hook answers, parsing never panics, and a
// verdict it accepts is one the Moderator can act on safely.
func FuzzParseAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"action":"allow"}`,
		`{"action":"flag","reason":"maybe"}`,
		`{"action":"block","reason":"nudity","ban_seconds":3600}`,
		`{"action":"block","ban_seconds":1e400}`,
		`{"action":"block","ban_seconds":-1e-400}`,
		`{"action":"block","ban_seconds":9223372036.854775807}`,
		`{"action":"block","ban_seconds":"60"}`,
		`{"action":"block","ban_seconds":null,"reason":"\u0000\u2028"}`,
		`{"action":"block","action":"allow"}`,
		`{"Action":"Block","BAN_SECONDS":5}`,
		`[]`, `null`, `""`, `{}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, note, err := parseAnswer(data)
		if err != nil {
			if v != (Verdict{}) || note != "" {
				t.Fatalf("error %v with verdict %+v note %q", err, v, note)
			}
			return
		}
		switch v.Action {
		case Allow, Flag, Block:
		default:
			t.Fatalf("accepted action %q", v.Action)
		}
		if v.Ban < 0 || (v.Ban > 0 && v.Ban < time.Second) || (v.Action != Block && v.Ban != 0) {
			t.Fatalf("ban %v for %s", v.Ban, v.Action)
		}
		if len(v.Reason) > maxReason || !utf8.ValidString(v.Reason) || strings.TrimSpace(v.Reason) != v.Reason {
			t.Fatalf("reason %q", v.Reason)
		}
		for _, r := range v.Reason {
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("reason %q holds control character %U", v.Reason, r)
			}
		}
		if !utf8.ValidString(note) {
			t.Fatalf("note %q", note)
		}
		v2, note2, err2 := parseAnswer(data)
		if v2 != v || note2 != note || err2 != nil {
			t.Fatal("parsing twice gave different results")
		}
	})
}

func TestBanFor(t *testing.T) {
	opts := DefaultOptions()
	opts.DefaultBan, opts.MaxBan = 10*time.Minute, 24*time.Hour
	var logged bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	m := newModerator(t, opts)
	cases := []struct {
		ban, want time.Duration
		logged    bool
	}{
		{0, 10 * time.Minute, false},
		{time.Hour, time.Hour, false},
		{24 * time.Hour, 24 * time.Hour, false},
		{-time.Second, 10 * time.Minute, true},
		{math.MinInt64, 10 * time.Minute, true},
		{24*time.Hour + 1, 24 * time.Hour, true},
		{math.MaxInt64, 24 * time.Hour, true},
	}
	for _, tc := range cases {
		logged.Reset()
		if got := m.banFor(Verdict{Action: Block, Ban: tc.ban, Screener: "x"}, m.log); got != tc.want {
			t.Errorf("ban %v: %v, want %v", tc.ban, got, tc.want)
		}
		if (logged.Len() > 0) != tc.logged {
			t.Errorf("ban %v: logged %q, want a line: %v", tc.ban, logged.String(), tc.logged)
		}
	}
	if _, err := New(Options{DefaultBan: 2 * time.Hour, MaxBan: time.Hour}); err == nil {
		t.Error("a default ban longer than the longest was accepted")
	}
}

// TestWebhookBanValidated: a hook's ban_seconds that overflows a Duration
// bans for MaxBan, a negative or non-numeric one for the default ban; never
// no ban, and the log says why.
func TestWebhookBanValidated(t *testing.T) {
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=1", ingest.CodecH264, 30, 30)
	cases := []struct {
		ban  string
		want time.Duration
		log  string
	}{
		{"1e300", 48 * time.Hour, "longest allowed"},
		{"9300000000", 48 * time.Hour, "longest allowed"},
		{"-5", 10 * time.Minute, "negative"},
		{`"forever"`, 10 * time.Minute, "not a number"},
		{"120", 2 * time.Minute, ""},
	}
	for _, tc := range cases {
		t.Run(tc.ban, func(t *testing.T) {
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"action":"block","reason":"test","ban_seconds":%s}`, tc.ban)
			}))
			defer hook.Close()
			h := newHub()
			var logged syncBuffer
			opts := DefaultOptions()
			opts.WebhookURL, opts.WebhookSecret = hook.URL, "k"
			opts.DefaultBan, opts.MaxBan = 10*time.Minute, 48*time.Hour
			opts.Enforcer = h
			opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			m := newModerator(t, opts)
			play(t, m, h, c, "ban", 3*time.Second, nil)
			m.Close()
			calls := h.takedowns()
			if len(calls) != 1 || calls[0].ban != tc.want {
				t.Fatalf("takedowns %+v, want one with ban %v; log:\n%s", calls, tc.want, logged.String())
			}
			if tc.log != "" && !strings.Contains(logged.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logged.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestTimedSignature(t *testing.T) {
	secret, body := []byte("s3cret"), []byte("--b\r\nframe\r\n--b--\r\n")
	now := time.Unix(1_800_000_000, 0)
	good := SignTimed(secret, body, now)
	cases := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		at     time.Time
		ok     bool
	}{
		{"fresh", secret, body, good, now.Add(time.Second), true},
		{"at the window's edge", secret, body, good, now.Add(ReplayWindow), true},
		{"replayed later", secret, body, good, now.Add(ReplayWindow + time.Second), false},
		{"from the future", secret, body, good, now.Add(-ReplayWindow - time.Second), false},
		{"other body", secret, []byte("x"), good, now, false},
		{"other secret", []byte("other"), body, good, now, false},
		{"time changed", secret, body, strings.Replace(good, "t=1800000000", "t=1800000100", 1), now, false},
		{"malformed", secret, body, "sha256=abc", now, false},
		{"empty", secret, body, "", now, false},
	}
	for _, tc := range cases {
		err := VerifyTimedSignature(tc.secret, tc.body, tc.header, tc.at, 0)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestWebhookNeverFollowsRedirects: a hook that answers with a redirect gets
// a screening failure, and the frame never reaches the redirect's target.
func TestWebhookNeverFollowsRedirects(t *testing.T) {
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Write([]byte(`{"action":"allow"}`))
	}))
	defer target.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer hook.Close()
	for _, client := range []*http.Client{nil, {Timeout: 5 * time.Second}} {
		w := NewWebhook(hook.URL, "k", client)
		_, err := w.Screen(context.Background(), &Frame{Channel: "c", JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}})
		if err == nil || !strings.Contains(err.Error(), "307") {
			t.Errorf("redirect answered: %v, want a failure naming the 307", err)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
	if http.DefaultClient.CheckRedirect != nil {
		t.Error("NewWebhook changed http.DefaultClient")
	}
}

func TestInsecureHookURL(t *testing.T) {
	for url, insecure := range map[string]bool{
		"http://127.0.0.1:9000/":    false,
		"http://[::1]:9000/":        false,
		"http://localhost/hook":     false,
		"https://hooks.example/x":   false,
		"http://hooks.example/x":    true,
		"http://10.0.0.5:9000/hook": true,
	} {
		if got := insecureHookURL(url) != ""; got != insecure {
			t.Errorf("%s: insecure %v, want %v", url, got, insecure)
		}
	}
}
