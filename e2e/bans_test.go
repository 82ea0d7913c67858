package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// takeDown asks srv's admin API to take the channel down with a ban.
func takeDown(t *testing.T, srv *Server, admin, channel string, banSeconds int) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.HTTP+"/api/v1/channels/"+channel+"/takedown",
		strings.NewReader(fmt.Sprintf(`{"reason":"e2e ban","ban_seconds":%d}`, banSeconds)))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("takedown: %s", resp.Status)
	}
}

// refused publishes file to url and reports whether onair refused it.
func refused(t *testing.T, file, url string) (bool, string) {
	t.Helper()
	pub := Publish(t, file, url, false)
	exited, err := pub.Wait(8 * time.Second)
	pub.Kill()
	return exited && err != nil, pub.Output()
}

// TestBansOutliveRestart: a ban set through the admin API still refuses
// publishes after onair restarts on the same data directory, and the
// takedown is still in the channel's moderation events.
func TestBansOutliveRestart(t *testing.T) {
	needTools(t, "ffmpeg")
	file := sharedSource(t, Source{Seconds: 8})
	const admin = "e2e-bans-admin-token-0123"
	dir := t.TempDir()
	first := StartServer(t, "--admin-token", admin, "--data-dir", dir)
	takeDown(t, first, admin, "main", 600)
	first.Stop(t)

	again := StartServer(t, "--admin-token", admin, "--data-dir", dir, "--channel", "main:"+first.Key)
	resp, body := Get(t, again.HTTP+"/api/v1/channels/main")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ban_until"`) {
		t.Errorf("channel after the restart: %s %s; want its ban listed", resp.Status, body)
	}
	req, _ := http.NewRequest("GET", again.HTTP+"/api/v1/channels/main/moderation", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"screener":"admin"`) || !strings.Contains(string(body), "e2e ban") {
			t.Errorf("moderation events after the restart: %s; want the admin takedown", body)
		}
	}
	if ok, out := refused(t, file, again.RTMP+"/"+first.Key); !ok {
		t.Fatalf("publish after the restart was not refused:\n%s", out)
	}
	if !strings.Contains(again.Logs(), "banned") {
		t.Errorf("no ban refusal in the log:\n%s", tail(again.Logs(), 20))
	}
}

// TestBansSharedThroughRedis: with Redis, a ban set on one node refuses the
// channel's publishes on another, and an unban on the other lifts it.
func TestBansSharedThroughRedis(t *testing.T) {
	needTools(t, "ffmpeg")
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Skipf("no Redis on 127.0.0.1:6379 (scripts/test starts one): %v", err)
	}
	file := sharedSource(t, Source{Seconds: 8})
	const admin = "e2e-bans-admin-token-0123"
	channel := fmt.Sprintf("bans%d", time.Now().UnixNano()%1_000_000)
	key := "e2e-shared-ban-key"
	rdb.Del(context.Background(), "onair:ban:"+channel)
	args := []string{"--admin-token", admin, "--redis-url", "redis://127.0.0.1:6379/0", "--channel", channel + ":" + key}
	a := StartServer(t, args...)
	b := StartServer(t, args...)
	takeDown(t, a, admin, channel, 600)
	if ok, out := refused(t, file, b.RTMP+"/"+key); !ok {
		t.Fatalf("node B accepted a publish banned on node A:\n%s", out)
	}
	req, _ := http.NewRequest("POST", b.HTTP+"/api/v1/channels/"+channel+"/unban", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Node A still holds the ban it set itself in memory until it reads the
	// store again, at the next publish: the unban is shared.
	pub := Publish(t, file, a.RTMP+"/"+key, true)
	WaitHTTP(t, a.HTTP+"/hls/"+channel+"/index.m3u8", 10*time.Second)
	pub.Stop()
}
