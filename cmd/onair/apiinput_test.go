package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startServe runs onair serve on loopback ports until the test ends and returns its HTTP base URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--shutdown-drain", "0s", "--ffmpeg", "/nonexistent/ffmpeg", "--data-dir", t.TempDir()}, args...), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	dir := regexp.MustCompile(`Directory:\s+(http://\S+)/`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := dir.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner in 20 s:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The takedown's numbers and strings are checked before anything happens: an
// overflowing, negative, fractional or non-numeric ban_seconds is a 400 that
// says why, never a silent "no ban".
func TestTakedownInputValidated(t *testing.T) {
	const token = "adm-test-token-for-validation"
	t.Setenv("ONAIR_ADMIN_TOKEN", token)
	base := startServe(t, "--channel", "main:main-key-123456")
	post := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", base+"/api/v1/channels/main/takedown", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("JSON answer headers: %v", resp.Header)
		}
		var v map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("answer is not JSON: %q", raw)
		}
		return resp.StatusCode, v
	}
	bad := []struct{ body, want string }{
		{`{"ban_seconds": 9300000000}`, "ban_seconds must be from 0 to 31536000 seconds"},
		{`{"ban_seconds": 1e300}`, "ban_seconds must be from 0"},
		{`{"ban_seconds": 1e999}`, "ban_seconds must be a number of seconds"},
		{`{"ban_seconds": -5}`, "ban_seconds must be from 0"},
		{`{"ban_seconds": 1.5}`, "whole number of seconds"},
		{`{"ban_seconds": "NaN"}`, "ban_seconds must be a number of seconds"},
		{`{"ban_seconds": NaN}`, "body must be JSON"},
		{`{"ban_seconds": "600"}`, "ban_seconds must be a number of seconds"},
		{`{"ban_seconds": null}`, "ban_seconds must be a number of seconds"},
		{`{"ban_seconds": 600}`, ""},
		{`{"ban_seconds": 6e2}`, ""},
		{`{"ban_second": 600}`, "unknown field"},
		{`{"reason": "` + strings.Repeat("x", 501) + `"}`, "at most 500 characters"},
		{`{"reason": "x"} {"reason": "y"}`, "one JSON object"},
		{`{"reason": "` + strings.Repeat("x", 5000) + `"}`, "larger than 4096 bytes"},
		{`[1,2]`, "body must be JSON"},
	}
	for _, c := range bad {
		code, v := post(c.body)
		if c.want == "" {
			if code != 200 {
				t.Errorf("%.60s: got %d %v, want 200", c.body, code, v)
			}
			continue
		}
		if msg, _ := v["error"].(string); code != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("%.60s: got %d %q, want 400 with %q", c.body, code, msg, c.want)
		}
	}

	// A valid ban is applied for exactly as long as asked.
	code, v := post(`{"reason": "test", "ban_seconds": 31536000}`)
	if code != 200 || v["state"] != "taken_down" {
		t.Fatalf("valid takedown: %d %v", code, v)
	}
	until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["ban_until"]))
	if err != nil || until.Sub(time.Now()) < 364*24*time.Hour || until.Sub(time.Now()) > 366*24*time.Hour {
		t.Fatalf("ban_until %v (%v), want a year from now", v["ban_until"], err)
	}
	// An empty body takes the defaults.
	if code, v := post(""); code != 200 {
		t.Fatalf("empty body: %d %v", code, v)
	}
}
