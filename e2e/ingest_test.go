package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPublishRefusals covers publishes onair must refuse: each fails in ffmpeg,
// publishes nothing, and never leaks the key that was tried.
func TestPublishRefusals(t *testing.T) {
	needTools(t, "ffmpeg")
	file := sharedSource(t, Source{Seconds: 8})
	srv := StartServer(t)
	playlist := srv.HTTP + "/hls/main/index.m3u8"

	cases := []struct {
		name, url, secret string
	}{
		{"wrong key", srv.RTMP + "/wrong-key-xyzzy-1234", "wrong-key-xyzzy-1234"},
		{"unknown app", strings.TrimSuffix(srv.RTMP, "/live") + "/vod/" + srv.Key, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := Publish(t, file, c.url, false)
			exited, err := pub.Wait(15 * time.Second)
			if !exited {
				t.Fatal("ffmpeg is still publishing; onair should have refused it")
			}
			if err == nil {
				t.Fatalf("ffmpeg exited 0; want a failure\n%s", pub.Output())
			}
			if resp, _ := Get(t, playlist); resp.StatusCode != http.StatusNotFound {
				t.Errorf("playlist answered %d after a refused publish, want 404", resp.StatusCode)
			}
			if c.secret != "" && strings.Contains(srv.Logs(), c.secret) {
				t.Errorf("the log contains the refused key")
			}
		})
	}

	t.Run("second publisher", func(t *testing.T) {
		first := Publish(t, file, srv.RTMP+"/"+srv.Key, true)
		WaitHTTP(t, playlist, 10*time.Second)
		second := Publish(t, file, srv.RTMP+"/"+srv.Key, false)
		if exited, err := second.Wait(15 * time.Second); !exited || err == nil {
			t.Fatalf("second publisher: exited=%v err=%v; want it refused", exited, err)
		}
		if exited, _ := first.Wait(0); exited {
			t.Fatalf("the first publisher was cut off:\n%s", first.Output())
		}
		if resp, _ := Get(t, playlist); resp.StatusCode != http.StatusOK {
			t.Errorf("playlist answered %d while the first publisher is live", resp.StatusCode)
		}
		first.Stop()
	})

	if strings.Contains(srv.Logs(), srv.Key) {
		t.Errorf("the log contains the channel's stream key")
	}
}
