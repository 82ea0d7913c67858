package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/chat"
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"no command", nil, 2, "", "Usage"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, 0, "onair ", ""},
		{"help", []string{"help"}, 0, "onair serve", ""},
		{"serve with a bad setting", []string{"serve", "--data-dir", dir, "--hls-variant", "dash"}, 1, "", "invalid setting hls-variant"},
		{"token without channel", []string{"token", "moderator", "--data-dir", dir}, 1, "", "--channel"},
		{"hash without images", []string{"moderation", "hash"}, 1, "", "usage"},
		{"hash of a missing file", []string{"moderation", "hash", filepath.Join(dir, "none.png")}, 1, "", "none.png"},
		{"load without command", []string{"load"}, 1, "", "onair load publish"},
		{"load publish without URL", []string{"load", "publish"}, 1, "", "-url and -input are required"},
		{"load publish with a bad pattern", []string{"load", "publish", "-url", "rtmp://127.0.0.1:1/live", "-input", "x.flv", "-key", "k"}, 1, "", "exactly one %d"},
		{"load publish with a bad URL", []string{"load", "publish", "-url", "rtmp://127.0.0.1:1/live/key", "-input", "x.flv"}, 1, "", "stream names come from"},
		{"load publish of a missing file", []string{"load", "publish", "-url", "rtmp://127.0.0.1:1/live", "-input", filepath.Join(dir, "none.flv")}, 1, "", "none.flv"},
		{"load watch without URL", []string{"load", "watch"}, 1, "", "-url is required"},
		{"load watch URL without channel", []string{"load", "watch", "-url", "http://127.0.0.1:1/hls/x/index.m3u8"}, 1, "", "want {channel}"},
		{"load channels", []string{"load", "channels", "-n", "2"}, 0, "channels:\n  - \"b0:benchkey0000\"\n  - \"b1:benchkey0001\"\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(c.args, &out, &errOut); code != c.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, c.code, errOut.String())
			}
			if !strings.Contains(out.String(), c.out) || !strings.Contains(errOut.String(), c.err) {
				t.Fatalf("stdout %q, stderr %q; want %q and %q", out.String(), errOut.String(), c.out, c.err)
			}
		})
	}
}

// A token printed by "onair token moderator" is accepted by chat with the server's secret.
func TestModeratorTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"token", "moderator", "--channel", "main", "--data-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	if err := chat.VerifyModeratorToken([]byte(st.Secret), "main", tok, time.Now()); err != nil {
		t.Fatalf("token refused for its channel: %v", err)
	}
	if err := chat.VerifyModeratorToken([]byte(st.Secret), "other", tok, time.Now()); err == nil {
		t.Fatal("token accepted for another channel")
	}
	mt, err := chat.ParseModeratorToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(mt.Expires); d > 24*time.Hour || d < 23*time.Hour {
		t.Fatalf("default lifetime %v, want 24h", d)
	}
	if !strings.Contains(errOut.String(), mt.ID) {
		t.Fatalf("the token id is not shown: %q", errOut.String())
	}
	if code := run([]string{"token", "moderator", "--channel", "main", "--data-dir", dir, "--ttl", "8760h"}, &out, &errOut); code == 0 {
		t.Fatal("a token valid for a year was made")
	}

	// Revoked by id, into the data directory, where a server without Redis looks.
	out.Reset()
	if code := run([]string{"token", "revoke", mt.ID, "--data-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, errOut.String())
	}
	rev, err := chat.NewFileRevocations(revokedTokensPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := rev.Revoked(context.Background(), mt.ID); err != nil || !r {
		t.Fatalf("not revoked: %v %v", r, err)
	}
	if code := run([]string{"token", "revoke", "not-an-id", "--data-dir", dir}, &out, &errOut); code == 0 {
		t.Fatal("revoked a malformed id")
	}
}

// startServeRTMP runs onair serve and returns its RTMP and HTTP addresses and its log.
func startServeRTMP(t *testing.T, args ...string) (rtmpAddr, httpAddr string, logs *lockedBuffer) {
	t.Helper()
	logs = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--data-dir", t.TempDir(), "--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--shutdown-drain", "0s", "--moderation-gate=false", "--log-level", "debug"}, args...), &bytes.Buffer{}, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	waitUntil(t, "start", 10*time.Second, func() bool {
		m := regexp.MustCompile(`onair started.* rtmp=(\S+) http=(\S+)`).FindStringSubmatch(logs.String())
		if m != nil {
			rtmpAddr, httpAddr = m[1], m[2]
		}
		return m != nil
	})
	return rtmpAddr, httpAddr, logs
}

// publishTestSource publishes seconds of a small test picture with ffmpeg to
// key on rtmpAddr; the test waits for it or it is killed when the test ends.
func publishTestSource(t *testing.T, rtmpAddr, key, seconds string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:duration="+seconds,
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-f", "flv", "rtmp://"+rtmpAddr+"/live/"+key)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}
