package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/onairhq/onair/chat"
)

// Every route the API serves is in docs/openapi.yaml and nothing else is;
// public routes say so (security: []), admin routes answer 401.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type operation struct {
		Security  *[]map[string][]string `yaml:"security"`
		Responses map[string]any         `yaml:"responses"`
	}
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	documented := map[string]operation{}
	for path, item := range spec.Paths {
		for method, node := range item {
			if method == "parameters" {
				continue
			}
			var op operation
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
	}
	served := map[string]bool{}
	for _, rt := range (&app{}).apiRoutes() {
		key := rt.method + " " + rt.path
		served[key] = true
		op, ok := documented[key]
		if !ok {
			t.Errorf("%s is served but not in docs/openapi.yaml", key)
			continue
		}
		openToAll := op.Security != nil && len(*op.Security) == 0
		switch {
		case rt.access == public && !openToAll:
			t.Errorf("%s is public but docs/openapi.yaml asks for the admin token", key)
		case rt.access == adminOnly && openToAll:
			t.Errorf("%s needs the admin token but docs/openapi.yaml says it is public", key)
		case rt.access == streamer && (op.Security == nil || len(*op.Security) != 2):
			t.Errorf("%s takes the admin or the channel's moderator token but docs/openapi.yaml says otherwise", key)
		case rt.access != public && op.Responses["401"] == nil:
			t.Errorf("%s: docs/openapi.yaml lists no 401 answer", key)
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("%s is in docs/openapi.yaml but not served", key)
		}
	}
}

// apiClient calls a test server's API.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

// call sends body (a string, or nil) and returns the status and the answer.
func (c apiClient) call(method, path string, body any, token string) (int, string) {
	c.t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// admin calls with the admin token and fails the test unless the status is want.
func (c apiClient) admin(method, path string, body any, want int) map[string]any {
	c.t.Helper()
	code, raw := c.call(method, path, body, c.token)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	var v map[string]any
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			c.t.Fatalf("%s %s: not JSON: %q", method, path, raw)
		}
	}
	return v
}

func TestChannelAPI(t *testing.T) {
	const token = "adm-test-token-for-channels"
	const secret = "test-secret-test-secret-test-secret"
	t.Setenv("ONAIR_ADMIN_TOKEN", token)
	t.Setenv("ONAIR_SECRET", secret)
	dir := t.TempDir()
	c := apiClient{t: t, base: startServe(t, "--data-dir", dir, "--channel", "cfg:cfg-key-123456"), token: token}

	made := c.admin("POST", "/api/v1/channels", `{"name": "news", "title": "Evening news"}`, 201)
	key := made["key"].(map[string]any)
	secretKey, keyID := key["key"].(string), key["id"].(string)
	if !strings.HasPrefix(secretKey, "sk_") || made["channel"].(map[string]any)["title"] != "Evening news" {
		t.Fatalf("created: %v", made)
	}
	c.admin("PATCH", "/api/v1/channels/news", `{"title": "Late news"}`, 200)
	added := c.admin("POST", "/api/v1/channels/news/keys", nil, 201)
	rotated := c.admin("POST", "/api/v1/channels/news/keys/"+keyID+"/rotate", nil, 201)
	keys := c.admin("GET", "/api/v1/channels/news/keys", nil, 200)["keys"].([]any)
	ids := []string{}
	for _, k := range keys {
		ids = append(ids, k.(map[string]any)["id"].(string))
	}
	if !slices.Equal(ids, []string{rotated["id"].(string), added["id"].(string)}) {
		t.Fatalf("keys after add and rotate: %v", ids)
	}
	c.admin("DELETE", "/api/v1/channels/news/keys/"+added["id"].(string), nil, 204)
	c.admin("DELETE", "/api/v1/channels/news/keys/"+rotated["id"].(string), nil, 409) // the last one

	// No listing shows a key.
	for _, path := range []string{"/api/v1/channels", "/api/v1/channels/news", "/api/v1/channels/news/keys", "/api/v1/channels/cfg", "/api/v1/events"} {
		_, body := c.call("GET", path, nil, token)
		for _, k := range []string{secretKey, added["key"].(string), rotated["key"].(string), "cfg-key-123456"} {
			if strings.Contains(body, k) {
				t.Errorf("GET %s shows a stream key: %s", path, body)
			}
		}
	}
	if got := c.admin("GET", "/api/v1/channels/news", nil, 200)["title"]; got != "Late news" {
		t.Fatalf("title: %v", got)
	}

	modToken := chat.SignModeratorToken([]byte(secret), "news", time.Hour)
	for _, rt := range (&app{}).apiRoutes() {
		if rt.access != adminOnly {
			continue
		}
		path := strings.NewReplacer("{name}", "news", "{id}", keyID).Replace(rt.path)
		for _, tok := range []string{"", "wrong-token-wrong-token", modToken} {
			if code, body := c.call(rt.method, path, `{}`, tok); code != 401 {
				t.Errorf("%s %s with token %q: %d %s, want 401", rt.method, path, tok, code, body)
			}
		}
	}

	bad := []struct {
		method, path, body string
		want               int
		says               string
	}{
		{"POST", "/api/v1/channels", `{"name": "Bad Name"}`, 400, "name must match"},
		{"POST", "/api/v1/channels", `{"name": ""}`, 400, "name must match"},
		{"POST", "/api/v1/channels", `{"name": "news"}`, 409, "already exists"},
		{"POST", "/api/v1/channels", `{"name": "cfg"}`, 409, "configuration"},
		{"POST", "/api/v1/channels", `{"name": "x", "key": "mine"}`, 400, "unknown field"},
		{"POST", "/api/v1/channels", `{"name": "x"} {"name": "y"}`, 400, "one JSON object"},
		{"POST", "/api/v1/channels", `{"name": "x", "title": "` + strings.Repeat("é", 201) + `"}`, 400, "at most 200"},
		{"POST", "/api/v1/channels", `{"name": "x", "title": "` + strings.Repeat("a", 5000) + `"}`, 400, "larger than 4096"},
		{"PATCH", "/api/v1/channels/news", `{}`, 400, "must set"},
		{"PATCH", "/api/v1/channels/nope", `{"title": "x"}`, 404, "no such channel"},
		{"PATCH", "/api/v1/channels/cfg", `{"title": "x"}`, 409, "configuration"},
		{"DELETE", "/api/v1/channels/nope", ``, 404, "no such channel"},
		{"DELETE", "/api/v1/channels/cfg", ``, 409, "configuration"},
		{"POST", "/api/v1/channels/nope/keys", ``, 404, "no such channel"},
		{"POST", "/api/v1/channels/news/keys/key_nope/rotate", ``, 404, "no such key"},
		{"DELETE", "/api/v1/channels/news/keys/key_nope", ``, 404, "no such key"},
		{"POST", "/api/v1/channels/nope/kick", ``, 404, "no such channel"},
		{"POST", "/api/v1/channels/news/kick", ``, 409, "not live"},
		{"POST", "/api/v1/channels/news/end", ``, 409, "not live"},
		{"POST", "/api/v1/channels/news/end", `{"now": true}`, 400, "unknown field"},
		{"POST", "/api/v1/channels/news/takedown", `{"ban_seconds": "1h"}`, 400, "ban_seconds"},
		{"POST", "/api/v1/channels/news/takedown", `{"ban_seconds": -1}`, 400, "ban_seconds"},
		{"GET", "/api/v1/events?limit=0", ``, 400, "limit"},
		{"GET", "/api/v1/events?limit=abc", ``, 400, "limit"},
		{"GET", "/api/v1/events?channel=Bad%20Name", ``, 400, "channel"},
	}
	for _, tc := range bad {
		code, body := c.call(tc.method, tc.path, tc.body, token)
		if code != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s %.60s: %d %s, want %d saying %q", tc.method, tc.path, tc.body, code, body, tc.want, tc.says)
		}
	}

	// A takedown is listed among the events.
	c.admin("POST", "/api/v1/channels/news/takedown", `{"reason": "test takedown", "ban_seconds": 0}`, 200)
	evs := c.admin("GET", "/api/v1/events?channel=news", nil, 200)["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["reason"] != "test takedown" || evs[0].(map[string]any)["screener"] != "admin" {
		t.Fatalf("events: %v", evs)
	}
	if evs := c.admin("GET", "/api/v1/events?channel=cfg", nil, 200)["events"].([]any); len(evs) != 0 {
		t.Fatalf("events of another channel: %v", evs)
	}

	// Kept in the data directory: another process on it has the channel.
	c2 := apiClient{t: t, base: startServe(t, "--data-dir", dir, "--channel", "cfg:cfg-key-123456"), token: token}
	if got := c2.admin("GET", "/api/v1/channels/news", nil, 200)["title"]; got != "Late news" {
		t.Fatalf("after a restart: title %v", got)
	}
	c2.admin("DELETE", "/api/v1/channels/news", nil, 204)
	c2.admin("GET", "/api/v1/channels/news", nil, 404)
}

// A key rotated during a live broadcast does not cut it; the old key is
// refused at the next publish, the new one works; kick and end act on the publisher.
func TestKeyRotationDuringBroadcast(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
	const token = "adm-test-token-for-rotation"
	t.Setenv("ONAIR_ADMIN_TOKEN", token)
	rtmpAddr, httpAddr, logs := startServeRTMP(t, "--channel", "cfg:cfg-key-123456", "--reconnect-grace", "10s")
	c := apiClient{t: t, base: "http://" + httpAddr, token: token}
	publish := func(key, seconds string) *exec.Cmd { return publishTestSource(t, rtmpAddr, key, seconds) }
	state := func() string {
		return c.admin("GET", "/api/v1/channels/show", nil, 200)["state"].(string)
	}
	made := c.admin("POST", "/api/v1/channels", `{"name": "show"}`, 201)
	oldKey := made["key"].(map[string]any)
	live := publish(oldKey["key"].(string), "60")
	waitUntil(t, "show live", 15*time.Second, func() bool { return state() == "live" })
	mark := len(logs.String())

	newKey := c.admin("POST", "/api/v1/channels/show/keys/"+oldKey["id"].(string)+"/rotate", nil, 201)
	time.Sleep(2 * time.Second)
	if s := state(); s != "live" || strings.Contains(logs.String()[mark:], "broadcast ended") {
		t.Fatalf("the rotation cut the broadcast: state %s", s)
	}
	if live.ProcessState != nil {
		t.Fatal("the publisher was disconnected by the rotation")
	}

	// Kicked, the publisher's connection closes; the broadcast waits for it.
	c.admin("POST", "/api/v1/channels/show/kick", nil, 200)
	done := make(chan error, 1)
	go func() { done <- live.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ffmpeg still publishing 10 s after the kick")
	}
	if s := state(); s != "reconnecting" {
		t.Fatalf("after the kick: state %s, want reconnecting", s)
	}
	if err := publish(oldKey["key"].(string), "3").Wait(); err == nil {
		t.Fatal("the rotated key still publishes")
	}
	publish(newKey["key"].(string), "60")
	waitUntil(t, "show live with the new key", 15*time.Second, func() bool { return state() == "live" })
	if strings.Count(logs.String()[mark:], "broadcast started") != 0 {
		t.Fatal("the new key's publish started a new broadcast instead of continuing the one in its grace period")
	}

	c.admin("POST", "/api/v1/channels/show/end", nil, 200)
	waitUntil(t, "show offline", 5*time.Second, func() bool { return state() == "offline" })
	if !strings.Contains(logs.String()[mark:], `reason=ended`) {
		t.Fatal("no broadcast ended with reason ended in the log")
	}
}

// With Redis, a channel made, renamed or deleted on one node is so on every
// node at once, and every node lists every node's events.
func TestChannelAPIAcrossNodes(t *testing.T) {
	const token = "adm-test-token-for-nodes"
	t.Setenv("ONAIR_ADMIN_TOKEN", token)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DB: 14})
	defer rdb.Close()
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("redis on 127.0.0.1:6379: %v", err)
	}
	args := []string{"--redis-url", "redis://127.0.0.1:6379/14", "--channel", "cfg:cfg-key-123456", "--registry-ttl", "2s"}
	a := apiClient{t: t, base: startServe(t, args...), token: token}
	b := apiClient{t: t, base: startServe(t, args...), token: token}
	title := func(c apiClient) any {
		code, raw := c.call("GET", "/api/v1/channels/shared", nil, "")
		if code != 200 {
			return code
		}
		var v map[string]any
		json.Unmarshal([]byte(raw), &v)
		return v["title"]
	}
	a.admin("POST", "/api/v1/channels", `{"name": "shared", "title": "One"}`, 201)
	waitUntil(t, "the channel on the other node", 3*time.Second, func() bool { return title(b) == "One" })
	b.admin("PATCH", "/api/v1/channels/shared", `{"title": "Two"}`, 200)
	waitUntil(t, "the new title on the first node", 3*time.Second, func() bool { return title(a) == "Two" })

	a.admin("POST", "/api/v1/channels/shared/takedown", `{"reason": "seen everywhere"}`, 200)
	evs := b.admin("GET", "/api/v1/events", nil, 200)["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["reason"] != "seen everywhere" {
		t.Fatalf("events on the other node: %v", evs)
	}
	b.admin("DELETE", "/api/v1/channels/shared", nil, 204)
	waitUntil(t, "the channel gone from the first node", 3*time.Second, func() bool { return title(a) == 404 })
}

// "onair key show" says when the generated key was rotated through the API,
// instead of printing a key that no longer publishes.
func TestKeyShowAfterRotation(t *testing.T) {
	const token = "adm-test-token-for-key-show"
	t.Setenv("ONAIR_ADMIN_TOKEN", token)
	dir := t.TempDir()
	c := apiClient{t: t, base: startServe(t, "--data-dir", dir), token: token}
	show := func() (int, string, string) {
		var out, errOut bytes.Buffer
		code := run([]string{"key", "show", "--data-dir", dir}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, _ := show(); code != 0 || !strings.HasPrefix(out, "sk_") {
		t.Fatalf("before the rotation: exit %d, %q", code, out)
	}
	keys := c.admin("GET", "/api/v1/channels/main/keys", nil, 200)["keys"].([]any)
	c.admin("POST", "/api/v1/channels/main/keys/"+keys[0].(map[string]any)["id"].(string)+"/rotate", nil, 201)
	if code, out, errOut := show(); code == 0 || out != "" || !strings.Contains(errOut, "rotated or revoked through the API") {
		t.Fatalf("after the rotation: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	c.admin("DELETE", "/api/v1/channels/main", nil, 204)
	if code, _, errOut := show(); code == 0 || !strings.Contains(errOut, "was deleted through the API") {
		t.Fatalf("after deleting the channel: exit %d, stderr %q", code, errOut)
	}
}
