package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startEdge runs nginx with deploy/nginx's edge configuration in front of origin
// (host:port) and returns the edge's base URL.
func startEdge(t *testing.T, origin string) string {
	t.Helper()
	return startEdgeOn(t, origin, freePort(t))
}

// startEdgeOn is startEdge on a port chosen beforehand (the origin names
// the edge in edge-purge).
func startEdgeOn(t *testing.T, origin string, port int) string {
	t.Helper()
	return runEdge(t, "onair-edge.conf.template", port, "${ONAIR_ORIGIN}", origin)
}

// runEdge runs nginx with a template of deploy/nginx on port, its variables
// replaced: the listen address, the cache directory, purges from loopback,
// and vars (pairs of variable and value).
func runEdge(t *testing.T, template string, port int, vars ...string) string {
	t.Helper()
	needTools(t, "nginx")
	tmpl, err := os.ReadFile("../deploy/nginx/" + template)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	edge := strings.NewReplacer(append([]string{
		"${EDGE_LISTEN}", fmt.Sprintf("127.0.0.1:%d", port),
		"${EDGE_CACHE_DIR}", filepath.Join(dir, "cache"),
		"${EDGE_PURGE_FROM}", "127.0.0.1/32",
	}, vars...)...).Replace(string(tmpl))
	os.WriteFile(filepath.Join(dir, "edge.conf"), []byte(edge), 0o644)
	// A minimal nginx.conf around the edge block, as a distribution's would be.
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    include %[1]s/edge.conf;
}
`, dir)
	if os.Getuid() == 0 {
		main = "user root;\n" + main
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(main), 0o644)
	if out, err := exec.Command("nginx", "-t", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx rejects the edge configuration: %v\n%s", err, out)
	}
	cmd := exec.Command("nginx", "-p", dir, "-c", conf, "-g", "daemon off;")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// TERM lets the master stop its workers; a killed master would orphan them.
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx:\n%s%s", logs.String(), b)
		}
	})
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

var uriLine = regexp.MustCompile(`(?m)^[^#\s][^\s]*$`)

// TestCDNEdge puts a real nginx cache in front of onair: players read the stream
// through it, and many viewers asking for one object at once cost the origin one fetch.
func TestCDNEdge(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe", "nginx")
	file := sharedSource(t, Source{Seconds: 14})
	srv := StartServer(t)
	edge := startEdge(t, strings.TrimPrefix(srv.HTTP, "http://"))
	pub := Publish(t, file, srv.RTMP+"/"+srv.Key, false)
	WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 10*time.Second)

	// Find the newest complete segment through the edge.
	_, mv := Get(t, edge+"/hls/main/index.m3u8")
	media := uriLine.FindString(string(mv))
	if media == "" {
		t.Fatalf("no media playlist in the multivariant playlist:\n%s", mv)
	}
	_, pl := Get(t, edge+"/hls/main/"+media)
	segs := uriLine.FindAllString(string(pl), -1)
	if len(segs) == 0 {
		t.Fatalf("no segment in the media playlist:\n%s", pl)
	}
	seg := edge + "/hls/main/" + segs[len(segs)-1]

	// Twenty viewers at once: one origin fetch, identical bytes for all.
	var wg sync.WaitGroup
	status := make([]string, 20)
	bodies := make([][]byte, 20)
	for i := range status {
		wg.Go(func() {
			resp, body := Get(t, seg)
			status[i], bodies[i] = resp.Header.Get("X-Cache-Status"), body
			if resp.StatusCode != http.StatusOK {
				t.Errorf("viewer %d: %s answered %d", i, seg, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	misses := 0
	for i, s := range status {
		if s == "MISS" || s == "EXPIRED" || s == "" {
			misses++
		}
		if !bytes.Equal(bodies[i], bodies[0]) || len(bodies[i]) == 0 {
			t.Errorf("viewer %d got different bytes for one segment", i)
		}
	}
	if misses > 1 {
		t.Errorf("%d of 20 concurrent requests went to the origin (cache statuses %v), want 1", misses, status)
	}
	if resp, _ := Get(t, seg); resp.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("a later request for the segment was %q, want HIT", resp.Header.Get("X-Cache-Status"))
	}

	// A player reads the whole live stream through the edge.
	video, _ := probeFrames(t, edge+"/hls/main/index.m3u8", 60*time.Second)
	checkContinuous(t, "video through the edge", video, 1.0/30)
	pub.Wait(30 * time.Second)
}

// TestEdgePurgeOnTakedown: media of a broadcast cached by the nginx edge is
// no longer served by it once the broadcast is taken down: onair purges it.
func TestEdgePurgeOnTakedown(t *testing.T) {
	needTools(t, "ffmpeg", "nginx")
	file := sharedSource(t, Source{Seconds: 30})
	const admin = "e2e-purge-admin-token-0123"
	edgePort := freePort(t)
	srv := StartServer(t, "--admin-token", admin, "--edge-purge", fmt.Sprintf("http://127.0.0.1:%d", edgePort))
	edge := startEdgeOn(t, strings.TrimPrefix(srv.HTTP, "http://"), edgePort)
	pub := Publish(t, file, srv.RTMP+"/"+srv.Key, false)
	WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 10*time.Second)
	time.Sleep(2 * time.Second) // a few segments and parts

	// Cache the init segment, every listed segment and part through the edge.
	_, mv := Get(t, edge+"/hls/main/index.m3u8")
	media := uriLine.FindString(string(mv))
	_, pl := Get(t, edge+"/hls/main/"+media)
	var objects []string
	for _, m := range regexp.MustCompile(`(?:URI="|^)([a-z0-9]{8}_[^"\s]+)`).FindAllStringSubmatch(string(pl), -1) {
		objects = append(objects, edge+"/hls/main/"+m[1])
	}
	for _, line := range strings.Split(string(pl), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			objects = append(objects, edge+"/hls/main/"+line)
		}
	}
	if len(objects) < 5 {
		t.Fatalf("%d objects in the playlist:\n%s", len(objects), pl)
	}
	for _, u := range objects {
		Get(t, u)
		if resp, _ := Get(t, u); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache-Status") != "HIT" {
			t.Fatalf("%s through the edge: %s, cache %q; want a cached 200", u, resp.Status, resp.Header.Get("X-Cache-Status"))
		}
	}

	// Every object is asked for again until none is served, for at most 1 s.
	start := time.Now()
	takeDown(t, srv, admin, "main", 0)
	var served []string
	for {
		served = served[:0]
		for _, u := range objects {
			if resp, _ := Get(t, u); resp.StatusCode == http.StatusOK {
				served = append(served, u)
			}
		}
		if len(served) == 0 || time.Since(start) > time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	gone := time.Since(start)
	t.Logf("%d cached objects; none served by the edge %v after the takedown was asked for", len(objects), gone.Round(time.Millisecond))
	if len(served) > 0 {
		t.Errorf("the edge still serves %d of %d objects 1 s after the takedown: %v", len(served), len(objects), served)
	}
	if !strings.Contains(srv.Logs(), "taken-down broadcast purged from the edges") {
		t.Errorf("no purge in the log:\n%s", tail(srv.Logs(), 20))
	}
	pub.Kill()
}
