package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// SIGHUP reloads the channel list and keys from the configuration file while
// a broadcast goes on: the live channel stays live, a removed channel goes,
// a new one appears, and the old key no longer publishes.
func TestSIGHUPReloadsChannels(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "onair.yaml")
	write := func(channels string) {
		if err := os.WriteFile(file, []byte("channels: ["+channels+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`"main:main-key-1", "gone:gone-key-1"`)
	rtmpAddr, httpAddr, logs := startServeRTMP(t, "--config", file, "--data-dir", dir)
	publish := func(key, seconds string) *exec.Cmd { return publishTestSource(t, rtmpAddr, key, seconds) }
	channels := func() map[string]bool {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/channels")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct{ Channels []channelView }
		json.NewDecoder(resp.Body).Decode(&list)
		live := map[string]bool{}
		for _, c := range list.Channels {
			live[c.Name] = c.Live
		}
		return live
	}
	publish("main-key-1", "20")
	waitUntil(t, "main live", 15*time.Second, func() bool { return channels()["main"] })
	since := logs.String()

	write(`"main:main-key-2", "new:new-key-123"`)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "reload", 5*time.Second, func() bool { return strings.Contains(logs.String(), "configuration reloaded") })
	got := channels()
	if _, gone := got["gone"]; gone || !got["main"] {
		t.Fatalf("channels after reload: %v", got)
	}
	if _, ok := got["new"]; !ok {
		t.Fatalf("the new channel is missing: %v", got)
	}
	if strings.Contains(logs.String()[len(since):], "broadcast ended") {
		t.Fatal("the live broadcast ended on reload")
	}
	if err := publish("main-key-1", "2").Wait(); err == nil {
		t.Fatal("the old key still publishes")
	}
	if err := publish("new-key-123", "2").Wait(); err != nil {
		t.Fatalf("the new channel's key was refused: %v", err)
	}

	// An invalid file is refused; the running configuration stays.
	write(`"Bad Name:key-key-key"`)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "refused reload", 5*time.Second, func() bool { return strings.Contains(logs.String(), "reload refused") })
	if !channels()["main"] {
		t.Fatal("main is no longer live")
	}
}
