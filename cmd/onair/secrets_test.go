package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveUntilStarted runs onair serve with args until it has printed its banner, then stops it.
func serveUntilStarted(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--shutdown-drain", "0s", "--ffmpeg", "/nonexistent/ffmpeg"}, args...), &out, &errOut)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Directory:") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve ended at start: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no banner in 20 s:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	return out.String(), errOut.String()
}

// A generated stream key is printed at the start that generated it, never again;
// later starts say where it is kept and "onair key show" prints it.
func TestStreamKeyShownOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, _ := serveUntilStarted(t, "--data-dir", dir)
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first, st.DefaultKey) {
		t.Fatalf("first start does not show the generated key:\n%s", first)
	}
	second, logs := serveUntilStarted(t, "--data-dir", dir)
	if strings.Contains(second+logs, st.DefaultKey) {
		t.Fatalf("a later start printed the stream key:\n%s\n%s", second, logs)
	}
	if !strings.Contains(second, "onair key show --data-dir "+dir) || !strings.Contains(second, filepath.Join(dir, "state.json")) {
		t.Fatalf("a later start does not say where the key is and how to show it:\n%s", second)
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"key", "show", "--data-dir", dir}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != st.DefaultKey {
		t.Fatalf("onair key show: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	empty := t.TempDir()
	out.Reset()
	errOut.Reset()
	if code := run([]string{"key", "show", "--data-dir", empty}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no generated stream key") {
		t.Fatalf("onair key show without state: exit %d, %q", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(empty, stateFile)); err == nil {
		t.Fatal("onair key show generated a key: the server would then never show it")
	}
}

// Secrets given as flags are named in a warning (never echoed); the same
// settings from the environment or the file draw none.
func TestSecretFlagsWarn(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--admin-token", "adm-secret-1-long-enough", "--secret", "s3cr3t-value-long-enough"}, []string{"admin-token", "secret"}},
		{[]string{"--channel", "main:key-secret-1", "--moderation-webhook-secret", "hook-secret"}, []string{"channel", "moderation-webhook-secret"}},
		{[]string{"--redis-url", "redis://:pw-secret@127.0.0.1:6379/0"}, []string{"redis-url"}},
		{[]string{"--redis-url", "redis://127.0.0.1:6379/0", "--moderation-webhook", "http://hook:hook-pass@127.0.0.1/x"}, []string{"moderation-webhook"}},
		{[]string{"--events-webhook", "https://ev:ev-pass@hooks.example.com/e", "--events-webhook-secret", "ev-secret"}, []string{"events-webhook", "events-webhook-secret"}},
		{[]string{"--hls-segment-count", "5"}, nil},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg, err := loadConfig(fs, c.args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if got := secretFlags(fs, cfg); !slices.Equal(got, c.want) {
			t.Errorf("%v: warned about %v, want %v", c.args, got, c.want)
		}
	}
	// The environment and the file draw no warning.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg, err := loadConfig(fs, nil, func(k string) string {
		return map[string]string{"ONAIR_ADMIN_TOKEN": "adm-secret-1-long-enough", "ONAIR_REDIS_URL": "redis://:pw@127.0.0.1:6379/0"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := secretFlags(fs, cfg); len(got) != 0 {
		t.Errorf("settings from the environment warned: %v", got)
	}

	_, logs := serveUntilStarted(t, "--data-dir", t.TempDir(), "--admin-token", "adm-very-secret-token")
	if !strings.Contains(logs, "setting=admin-token") || !strings.Contains(logs, "env=ONAIR_ADMIN_TOKEN") || strings.Contains(logs, "adm-very-secret-token") {
		t.Fatalf("log does not warn about --admin-token by name only:\n%s", logs)
	}
}
