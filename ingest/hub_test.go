package ingest

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amf0 "github.com/yutopp/go-amf0"

	"github.com/onairhq/onair/bans"
	"github.com/onairhq/onair/internal/metricstest"
)

func TestNewHubValidates(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		wantE string
	}{
		{"ok", Options{Channels: []ChannelConfig{{Name: "a-b_1", Keys: []string{"k"}}}}, ""},
		{"bad name", Options{Channels: []ChannelConfig{{Name: "Bad!", Keys: []string{"k"}}}}, "must match"},
		{"too long", Options{Channels: []ChannelConfig{{Name: strings.Repeat("a", 65), Keys: []string{"k"}}}}, "must match"},
		{"duplicate", Options{Channels: []ChannelConfig{{Name: "a", Keys: []string{"k"}}, {Name: "a", Keys: []string{"j"}}}}, "twice"},
		{"no key", Options{Channels: []ChannelConfig{{Name: "a"}}}, "no stream key"},
		{"no key with webhook", Options{AuthWebhook: "http://x", Channels: []ChannelConfig{{Name: "a"}}}, ""},
		{"empty key", Options{Channels: []ChannelConfig{{Name: "a", Keys: []string{""}}}}, "empty stream key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHub(tt.opts)
			if tt.wantE == "" && err != nil || tt.wantE != "" && (err == nil || !strings.Contains(err.Error(), tt.wantE)) {
				t.Fatalf("err %v, want %q", err, tt.wantE)
			}
		})
	}
}

func TestChannelForKey(t *testing.T) {
	h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "one", Keys: []string{"k1", "k1b"}}, {Name: "two", Keys: []string{"k2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ key, want string }{
		{"k1", "one"}, {"k1b", "one"}, {"k2", "two"}, {"k", ""}, {"k1 ", ""}, {"", ""}, {"K1", ""},
	} {
		if got := h.channelForKey(tt.key); got != tt.want {
			t.Errorf("channelForKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestKeyHash(t *testing.T) {
	if got := keyHash("abc"); got != "ba7816bf" {
		t.Fatalf("keyHash = %s", got)
	}
}

func TestMetadataHints(t *testing.T) {
	enc := func(vals ...any) []byte {
		var b bytes.Buffer
		e := amf0.NewEncoder(&b)
		for _, v := range vals {
			if err := e.Encode(v); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	tests := []struct {
		name         string
		in           []byte
		v, a, wantOK bool
	}{
		{"both", enc("onMetaData", amf0.ECMAArray{"videocodecid": 7.0, "audiocodecid": 10.0}), true, true, true},
		{"video only", enc("onMetaData", amf0.ECMAArray{"videocodecid": 7.0, "width": 320.0}), true, false, true},
		{"fourcc string", enc("onMetaData", map[string]any{"videocodecid": "hvc1"}), true, false, true},
		{"not metadata", enc("onCuePoint", amf0.ECMAArray{}), false, false, false},
		{"garbage", []byte{0xff, 1, 2}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, a, ok := parseMetadataHints(tt.in)
			if v != tt.v || a != tt.a || ok != tt.wantOK {
				t.Fatalf("got %v %v %v", v, a, ok)
			}
		})
	}
}

func TestTakeDownWithoutBroadcast(t *testing.T) {
	h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "one", Keys: []string{"k"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.TakeDown("nope", "x", time.Minute); err == nil {
		t.Fatal("takedown of unknown channel succeeded")
	}
	if err := h.TakeDown("one", "spam", time.Minute); err != nil {
		t.Fatal(err)
	}
	st, _ := h.Channel("one")
	if st.Live || st.BanReason != "spam" || time.Until(st.BannedUntil) < 50*time.Second {
		t.Fatalf("status %+v", st)
	}
	if ref := h.claim(h.channels["one"], &session{}); ref == nil || ref.reason != "banned" || !strings.Contains(ref.desc, "spam") {
		t.Fatalf("claim during ban: %+v", ref)
	}
	_ = h.Unban("one")
	if st, _ := h.Channel("one"); !st.BannedUntil.IsZero() {
		t.Fatalf("still banned %+v", st)
	}
	var m bytes.Buffer
	if err := metricstest.Write(&m, h); err != nil || !strings.Contains(m.String(), "onair_ingest_active_publishers 0") {
		t.Fatalf("metrics %v:\n%s", err, m.String())
	}
}

func TestRateMeter(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	for s := 0; s < 6; s++ {
		for i := 0; i < 10; i++ {
			m.add(t0.Add(time.Duration(s)*time.Second+time.Duration(i)*100*time.Millisecond), 1000)
		}
	}
	if got := m.rate(t0.Add(6 * time.Second)); got != 80000 {
		t.Fatalf("rate %d, want 80000", got)
	}
	if got := m.rate(t0.Add(60 * time.Second)); got != 0 {
		t.Fatalf("stale rate %d", got)
	}
}

// TestBansKeptBeyondTheHub: a ban a hub sets is kept in Options.Bans, and
// another hub on the same store (a restart, another node) refuses the
// channel, then lets it publish once one of them lifts the ban.
func TestBansKeptBeyondTheHub(t *testing.T) {
	store, err := bans.OpenFile(filepath.Join(t.TempDir(), "bans.json"))
	if err != nil {
		t.Fatal(err)
	}
	newHub := func() *Hub {
		h, err := NewHub(Options{Channels: []ChannelConfig{{Name: "one", Keys: []string{"k"}}}, Bans: store})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, b := newHub(), newHub()
	if err := a.TakeDown("one", "spam", time.Hour); err != nil {
		t.Fatal(err)
	}
	b.LoadBans(context.Background())
	if st, _ := b.Channel("one"); st.BanReason != "spam" || time.Until(st.BannedUntil) < 59*time.Minute {
		t.Fatalf("other hub's status %+v", st)
	}
	if ref := b.claim(b.channels["one"], &session{}); ref == nil || ref.reason != "banned" {
		t.Fatalf("other hub's claim during the ban: %+v", ref)
	}
	if err := b.Unban("one"); err != nil {
		t.Fatal(err)
	}
	a.loadBan(context.Background(), a.channels["one"])
	if ref := a.claim(a.channels["one"], &session{}); ref != nil {
		t.Fatalf("claim after the other hub lifted the ban: %+v", ref)
	}
}
