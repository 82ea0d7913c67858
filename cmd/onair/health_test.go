package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/health"
	"github.com/onairhq/onair/ingest"
)

const (
	testSecret = "health-test-secret-0123456789"
	testAdmin  = "health-test-admin-0123456789"
)

// healthApp is an app with channels main and other, whose Monitor measures
// a synthetic 12 s broadcast of main (30 fps, 1 s keyframes, no audio track).
func healthApp(t *testing.T) (*app, *httptest.Server) {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	log := slog.New(slog.DiscardHandler)
	a, err := newApp(cfg, testSecret, testAdmin, []ingest.ChannelConfig{{Name: "main", Keys: []string{"main-key-0123456789"}},
		{Name: "other", Keys: []string{"other-key-0123456789"}}}, nil, "", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	b := &ingest.Broadcast{ID: "b1", Channel: "main", Started: time.Now(),
		Tracks: ingest.Tracks{Video: &ingest.VideoTrack{Codec: ingest.CodecH264, Width: 640, Height: 360}}}
	feed := ingest.NewFeed(1<<12, b.Tracks)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.health.Consume(ctx, b, feed); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	now := time.Now()
	for i := range 12 * 30 {
		dts := time.Duration(i) * time.Second / 30
		feed.Push(ingest.AccessUnit{Kind: ingest.KindVideo, DTS: dts, PTS: dts, Key: i%30 == 0,
			NALUs: [][]byte{make([]byte, 5000)}, Received: now.Add(dts)})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r, ok := a.health.Report("main"); ok && r.MediaSeconds >= 11.9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor did not measure the feed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	return a, srv
}

func getWith(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestHealthAPI: who may read a channel's health, and what they get.
func TestHealthAPI(t *testing.T) {
	_, srv := healthApp(t)
	mod := chat.SignModeratorToken([]byte(testSecret), "main", time.Hour)
	otherMod := chat.SignModeratorToken([]byte(testSecret), "other", time.Hour)
	forged := chat.SignModeratorToken([]byte("not-the-secret"), "main", time.Hour)
	expired := chat.SignModeratorToken([]byte(testSecret), "main", -time.Minute)
	ghostMod := chat.SignModeratorToken([]byte(testSecret), "ghost", time.Hour)
	cases := []struct {
		name, channel, token string
		status               int
		errText              string
	}{
		{"admin", "main", testAdmin, 200, ""},
		{"moderator of the channel", "main", mod, 200, ""},
		{"no token", "main", "", 401, "token required"},
		{"wrong token", "main", "wrong-token", 401, "invalid bearer token"},
		{"forged moderator token", "main", forged, 401, "invalid bearer token"},
		{"expired moderator token", "main", expired, 401, "invalid bearer token"},
		{"moderator of another channel", "main", otherMod, 403, "another channel"},
		{"unknown channel", "ghost", testAdmin, 404, "no such channel"},
		{"unknown channel, its own moderator token", "ghost", ghostMod, 404, "no such channel"},
		{"channel not live", "other", testAdmin, 409, "not live"},
		{"moderator of a channel not live", "other", otherMod, 409, "not live"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := getWith(t, srv.URL+"/api/v1/channels/"+c.channel+"/health", c.token)
			if status != c.status || !strings.Contains(string(body), c.errText) {
				t.Fatalf("HTTP %d %s, want %d with %q", status, body, c.status, c.errText)
			}
			if status != 200 {
				return
			}
			var r health.Report
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			if r.Channel != "main" || r.BroadcastID != "b1" || !r.Judged || r.Video == nil || r.Video.FPS != 30 ||
				r.Video.KeyframeInterval.Max != 1 || len(r.Warnings) != 1 || r.Warnings[0].Code != health.CodeNoAudio {
				t.Fatalf("report %s", body)
			}
		})
	}
}

// TestStatusCommand: onair status against a node in this process, and its failures.
func TestStatusCommand(t *testing.T) {
	_, srv := healthApp(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "--url", srv.URL, "--admin-token", testAdmin}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"2 channel(s)", "CHANNEL", "main", "other", "offline"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("onair status:\n%s", out.String())

	out.Reset()
	errOut.Reset()
	if code := run([]string{"status", "--url", srv.URL, "--admin-token", "wrong-token"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "admin token was refused") {
		t.Errorf("a wrong token: exit %d, stderr %q", code, errOut.String())
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	errOut.Reset()
	if code := run([]string{"status", "--url", deadURL, "--admin-token", testAdmin}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "cannot reach onair at "+deadURL) {
		t.Errorf("no server: exit %d, stderr %q", code, errOut.String())
	}
	// The token from the data directory, as the server generated it.
	dir := t.TempDir()
	if err := saveState(dir, state{AdminToken: testAdmin}); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	t.Setenv("ONAIR_ADMIN_TOKEN", "")
	if code := run([]string{"status", "--url", srv.URL, "--data-dir", dir}, &out, &errOut); code != 0 {
		t.Errorf("token from the data directory: exit %d: %s", code, errOut.String())
	}
}

// TestWriteStatus renders the screen of a live channel with warnings.
func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-90 * time.Second)
	chans := []channelView{
		{Name: "main", State: "live", Since: &since, Viewers: 7, Codecs: []string{"h264"}, Width: 1280, Height: 720, Bitrate: 2_500_000},
		{Name: "studio", State: "offline"},
	}
	reports := map[string]*health.Report{"main": {Judged: true,
		Video:    &health.VideoReport{FPS: 15, Profile: "High", KeyframeInterval: health.Range{Max: 4}},
		Warnings: []health.Warning{{Code: health.CodeNoAudio, Message: "no audio track: …"}}}}
	var out bytes.Buffer
	writeStatus(&out, "http://127.0.0.1:8080", chans, reports, now)
	for _, want := range []string{"2 channel(s), 1 live, 7 viewer(s)", "1m30s", "1280x720 h264 High", "15.0", "4.0 s", "2.5 Mbit/s", "1 warning(s)", "main: no audio track"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lacks %q:\n%s", want, out.String())
		}
	}
}
