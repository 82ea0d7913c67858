package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
)

// Several onair nodes sharing one Redis: a channel published on one node
// plays from any origin node, a dead node's channels go offline, a publisher
// moves between nodes within the reconnect grace, and a channel has one
// publisher across nodes.

// clusterRedisDB is the Redis database the cluster tests' nodes share, so
// their registry keys never meet another test's.
const clusterRedisDB = 11

// clusterRedis empties the cluster tests' Redis database and returns its URL.
func clusterRedis(t *testing.T) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DB: clusterRedisDB})
	defer rdb.Close()
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379: %v", err)
	}
	return fmt.Sprintf("redis://127.0.0.1:6379/%d", clusterRedisDB)
}

// startNode runs one node of a cluster on redisURL with the given roles.
func startNode(t *testing.T, redisURL, roles string, args ...string) *Server {
	t.Helper()
	return StartServer(t, append([]string{"--redis-url", redisURL, "--roles", roles, "--registry-ttl", "2s"}, args...)...)
}

// kill ends the node at once (SIGKILL): it releases nothing.
func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

var mediaURIs = regexp.MustCompile(`(?m)(?:URI="([^"]+)"|^([^#\n][^\n]*)$)`)

// mediaObjects lists the init, segment and part URIs a media playlist
// names (not its preload hint: that part does not exist yet).
func mediaObjects(pl string) []string {
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(pl, "\n") {
		if strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") || strings.HasPrefix(line, "#EXT-X-RENDITION-REPORT") {
			continue
		}
		for _, m := range mediaURIs.FindAllStringSubmatch(line, -1) {
			u := m[1] + m[2]
			if u != "" && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// TestClusterOrigin publishes to node A and watches from node B, an origin
// that holds no publisher: ffprobe reads every frame through B, hls.js
// (latest, low-latency) plays from B, and however many viewers B has, A is
// asked for each object once.
func TestClusterOrigin(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	rurl := clusterRedis(t)
	a := startNode(t, rurl, "all")
	b := startNode(t, rurl, "origin,web,chat")

	t.Run("ffprobe reads every frame through the origin", func(t *testing.T) {
		src := Source{Width: 640, Height: 360, FPS: 30, Seconds: 12, Video: true, Audio: true}
		pub := Publish(t, sharedSource(t, src), a.RTMP+"/"+a.Key, false)
		playlist := b.HTTP + "/hls/main/index.m3u8"
		WaitHTTP(t, playlist, 15*time.Second)
		video, audio := probeFrames(t, playlist, 60*time.Second)
		if exited, err := pub.Wait(30 * time.Second); !exited || err != nil {
			t.Fatalf("publisher: exited=%v err=%v\n%s", exited, err, pub.Output())
		}
		span := checkContinuous(t, "video", video, 1.0/30)
		if span < src.Seconds/2 {
			t.Errorf("video: read only %.1f s of a %.0f s stream through node B", span, src.Seconds)
		}
		if len(audio) == 0 {
			t.Errorf("no audio read through node B")
		}
		t.Logf("through node B: %d video frames over %.2f s, %d audio frames", len(video), span, len(audio))
	})

	pub := Publish(t, sharedSource(t, liveSource), a.RTMP+"/"+a.Key, true)
	index := b.HTTP + "/hls/main/index.m3u8"
	media := b.HTTP + "/hls/main/stream.m3u8"
	waitLivePlaylist(t, index, 3, 30*time.Second)

	t.Run("the directory's thumbnail comes from the publishing node", func(t *testing.T) {
		u := b.HTTP + "/api/v1/channels/main/thumbnail.jpg"
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			resp, err := http.Get(u)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "image/jpeg" && len(body) > 1000 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node B has no thumbnail of the channel published on node A (%s)", u)
			}
		}
	})

	t.Run("each object fetched once per origin", func(t *testing.T) {
		pl, ok := fetch200(media)
		if !ok {
			t.Fatalf("node B's media playlist: %q", pl)
		}
		objects := mediaObjects(pl)
		if len(objects) < 10 {
			t.Fatalf("only %d objects listed:\n%s", len(objects), pl)
		}
		mediaKinds := func(s *Server) float64 {
			return s.metricSum(t, "onair_hls_requests_total", `kind="init"`) +
				s.metricSum(t, "onair_hls_requests_total", `kind="segment"`) +
				s.metricSum(t, "onair_hls_requests_total", `kind="part"`)
		}
		before := mediaKinds(a)
		const viewers = 20
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		for range viewers {
			wg.Go(func() {
				for _, o := range objects {
					resp, err := http.Get(b.HTTP + "/hls/main/" + o)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					if err != nil || resp.StatusCode != http.StatusOK {
						mu.Lock()
						bad++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		fetched := mediaKinds(a) - before
		t.Logf("%d viewers × %d objects from node B: node A answered %.0f media requests", viewers, len(objects), fetched)
		if bad > 0 {
			t.Errorf("%d of %d requests to node B failed", bad, viewers*len(objects))
		}
		if fetched > float64(len(objects)) || fetched < 1 {
			t.Errorf("node A answered %.0f media requests for %d distinct objects asked %d times each of node B: want each once",
				fetched, len(objects), viewers)
		}

		// Blocking reloads of the next part, asked by every viewer at once: one request reaches A.
		next := nextPartQuery(t, pl)
		plBefore := a.metricSum(t, "onair_hls_requests_total", `kind="playlist"`)
		for range viewers {
			wg.Go(func() {
				resp, err := http.Get(media + next)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		if n := a.metricSum(t, "onair_hls_requests_total", `kind="playlist"`) - plBefore; n > 2 {
			t.Errorf("%d blocking reloads of %s through node B reached node A as %.0f requests, want 1", viewers, next, n)
		}
	})

	t.Run("hls.js latest plays low-latency from the origin", func(t *testing.T) {
		chromiumPath(t)
		site := servePlayerSite(t, playersDir(t))
		c := playerMatrix[0]
		_, read := openPlayer(t, site, index, c)
		st := read()
		for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline) && len(st.Fatal) == 0 && st.Wall < 15; st = read() {
			if exited, err := pub.Wait(0); exited {
				t.Fatalf("the publisher stopped (%v): %s", err, pub.Output())
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("hls.js %s through node B: %s", st.Version, describePlay(st))
		if st.StartMs == nil {
			t.Fatalf("never started")
		}
		if len(st.Fatal) > 0 {
			t.Errorf("fatal errors: %s", joinRaw(st.Fatal))
		}
		if st.Wall > 0 && st.Played/st.Wall < minAdvance {
			t.Errorf("advanced %.2f s of media in %.2f s", st.Played, st.Wall)
		}
	})
}

// nextPartQuery is the blocking-reload query for the part after the last one
// a playlist lists.
func nextPartQuery(t *testing.T, pl string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[a-z0-9]{8}_(\d+)_(\d+)\.m4s"`).FindStringSubmatch(pl)
	if m == nil {
		t.Fatalf("no preload hint in:\n%s", pl)
	}
	return "?_HLS_msn=" + m[1] + "&_HLS_part=" + m[2]
}

func stateOf(t *testing.T, s *Server, channel string) string {
	st, _ := channelState(t, s, channel)
	return st
}

// TestClusterNodeDies kills the node publishing a channel: every other node
// shows the channel offline within the registry TTL.
func TestClusterNodeDies(t *testing.T) {
	needTools(t, "ffmpeg")
	rurl := clusterRedis(t)
	a := startNode(t, rurl, "all")
	b := startNode(t, rurl, "origin,web,chat")
	Publish(t, sharedSource(t, liveSource), a.RTMP+"/"+a.Key, true)
	waitLivePlaylist(t, b.HTTP+"/hls/main/index.m3u8", 2, 30*time.Second)
	if st := stateOf(t, b, "main"); st != "live" {
		t.Fatalf("node B shows the channel %q, want live", st)
	}
	a.kill()
	killed := time.Now()
	for stateOf(t, b, "main") != "offline" {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("node B still shows the channel live 10 s after its node died")
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("offline on node B %.2f s after node A died (registry TTL 2 s)", took.Seconds())
	// The TTL, a heartbeat's lateness and the API's one-second reuse of its list.
	if took > 2*time.Second+time.Second+500*time.Millisecond {
		t.Errorf("offline after %s, want within the 2 s TTL (+1.5 s)", took)
	}
}

// TestClusterPublisherMoves: the publisher of a live broadcast on node A
// reconnects to node B within the grace, because node A died or because its
// connection to A dropped; a player watching through node B goes on without
// a fatal error, and B's playlist continues A's (media sequence rising, a
// new discontinuity sequence).
func TestClusterPublisherMoves(t *testing.T) {
	needTools(t, "ffmpeg")
	chromiumPath(t)
	for _, nodeDies := range []bool{true, false} {
		name := "publisher drops"
		if nodeDies {
			name = "node dies"
		}
		t.Run(name, func(t *testing.T) { publisherMoves(t, nodeDies) })
	}
}

func publisherMoves(t *testing.T, nodeDies bool) {
	rurl := clusterRedis(t)
	a := startNode(t, rurl, "all")
	b := startNode(t, rurl, "all")
	src := sharedSource(t, liveSource)
	first := Publish(t, src, a.RTMP+"/"+a.Key, true)
	index := b.HTTP + "/hls/main/index.m3u8"
	media := b.HTTP + "/hls/main/stream.m3u8"
	waitLivePlaylist(t, index, 3, 30*time.Second)
	before, _ := fetch200(media)
	msnA, discA := sequences(t, before)

	site := servePlayerSite(t, playersDir(t))
	ctx, read := openPlayer(t, site, index, playerMatrix[0])
	st := read()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && st.Played < 4 && len(st.Fatal) == 0; st = read() {
		time.Sleep(250 * time.Millisecond)
	}
	if st.StartMs == nil || len(st.Fatal) > 0 {
		t.Fatalf("the player did not start through node B: %s", describePlay(st))
	}

	killedAt, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.now()`))
	if nodeDies {
		a.kill()
	} else {
		first.Kill()
	}
	killed := time.Now()
	playedAtKill := st.Played
	// Like OBS: retry every second until a server takes the stream.
	var pub *Publisher
	for pub == nil {
		p := Publish(t, src, b.RTMP+"/"+b.Key, true)
		if exited, _ := p.Wait(time.Second); !exited {
			pub = p
		} else if time.Since(killed) > 15*time.Second {
			t.Fatalf("node B refused the publisher for 15 s after it left node A: %s", p.Output())
		}
	}
	moved := time.Since(killed)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && st.Played < playedAtKill+8 && len(st.Fatal) == 0; st = read() {
		time.Sleep(250 * time.Millisecond)
	}
	after, _ := fetch200(media)
	msnB, discB := sequences(t, after)
	t.Logf("publisher accepted by node B %.1f s after it left node A; player: %s; media sequence %d → %d, discontinuity sequence %d → %d",
		moved.Seconds(), describePlay(st), msnA, msnB, discA, discB)
	if len(st.Errors) > 0 {
		t.Logf("player errors (the last %d): %s", min(len(st.Errors), 10), joinRaw(st.Errors[max(0, len(st.Errors)-10):]))
	}
	if len(st.Fatal) > 0 {
		t.Errorf("fatal player errors across the move: %s", joinRaw(st.Fatal))
	}
	if st.Played < playedAtKill+8 {
		reqs, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(performance.getEntriesByType("resource").filter((e) => e.startTime > `+fmt.Sprint(killedAt-1500)+`).slice(0, 60).map((e) => [e.name.replace(/^.*\/hls\//, ""), Math.round(e.startTime), Math.round(e.responseEnd)]))`))
		t.Logf("the publisher left node A at %.0f ms; the player's requests from then [path, start ms, end ms]: %s", killedAt, reqs)
		t.Errorf("the player advanced %.1f s of media after the move, want 8", st.Played-playedAtKill)
	}
	if msnB <= msnA || discB <= discA {
		t.Errorf("node B's playlist does not continue node A's: media sequence %d → %d, discontinuity sequence %d → %d", msnA, msnB, discA, discB)
	}
}

// sequences reads a media playlist's media and discontinuity sequences.
func sequences(t *testing.T, pl string) (msn, disc uint64) {
	t.Helper()
	for _, line := range strings.Split(pl, "\n") {
		if v, ok := strings.CutPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			msn, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "#EXT-X-DISCONTINUITY-SEQUENCE:"); ok {
			disc, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if msn == 0 {
		t.Fatalf("no media sequence in:\n%s", pl)
	}
	return msn, disc
}

// TestClusterOnePublisher: a channel published on node A refuses a second
// publisher on node B; with takeover on, B's publisher takes it and A's is
// disconnected.
func TestClusterOnePublisher(t *testing.T) {
	needTools(t, "ffmpeg")
	src := sharedSource(t, Source{Width: 320, Height: 180, FPS: 30, Seconds: 30, Video: true, Audio: true})
	for _, takeover := range []bool{false, true} {
		t.Run(fmt.Sprintf("takeover=%v", takeover), func(t *testing.T) {
			rurl := clusterRedis(t)
			extra := []string{fmt.Sprintf("--takeover=%v", takeover)}
			a := startNode(t, rurl, "all", extra...)
			b := startNode(t, rurl, "all", extra...)
			first := Publish(t, src, a.RTMP+"/"+a.Key, true)
			WaitHTTP(t, a.HTTP+"/hls/main/index.m3u8", 15*time.Second)
			second := Publish(t, src, b.RTMP+"/"+b.Key, true)
			if !takeover {
				exited, _ := second.Wait(10 * time.Second)
				if !exited {
					t.Fatalf("node B accepted a second publisher of a channel live on node A")
				}
				if !strings.Contains(second.Output(), "already being published") {
					t.Errorf("the refused publisher was not told why: %s", second.Output())
				}
				if exited, _ := first.Wait(0); exited {
					t.Errorf("the first publisher was disconnected: %s", first.Output())
				}
				return
			}
			if exited, _ := first.Wait(10 * time.Second); !exited {
				t.Fatalf("node A kept its publisher after node B's took the channel over")
			}
			if exited, _ := second.Wait(0); exited {
				t.Fatalf("the taking-over publisher was disconnected: %s", second.Output())
			}
			// Node A now serves the channel from node B.
			deadline := time.Now().Add(15 * time.Second)
			for {
				body, ok := fetch200(a.HTTP + "/hls/main/stream.m3u8")
				if ok && !strings.Contains(body, "#EXT-X-ENDLIST") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node A does not serve node B's live playlist: %q", body)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// TestClusterTakedown: a broadcast that stops on the node publishing it
// ends on another node's origin with its playlist's EXT-X-ENDLIST, as on one
// node; one taken down (through the other node's API) is gone from the
// other origin within a second, what that origin kept of it included, and
// its publisher is refused on either node.
func TestClusterTakedown(t *testing.T) {
	needTools(t, "ffmpeg")
	const admin = "e2e-cluster-admin-token-0123"
	src := sharedSource(t, Source{Width: 320, Height: 180, FPS: 30, Seconds: 30, Video: true, Audio: true})
	rurl := clusterRedis(t)
	a := startNode(t, rurl, "all", "--admin-token", admin)
	b := startNode(t, rurl, "origin,web", "--admin-token", admin)
	media := b.HTTP + "/hls/main/stream.m3u8"

	pub := Publish(t, src, a.RTMP+"/"+a.Key, true)
	waitLivePlaylist(t, media, 3, 30*time.Second)
	pub.Stop()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if pl, ok := fetch200(media); ok && strings.Contains(pl, "#EXT-X-ENDLIST") {
			break
		}
		if time.Now().After(deadline) {
			pl, _ := fetch200(media)
			t.Fatalf("node B does not end the stopped broadcast's playlist within 5 s:\n%s", pl)
		}
	}

	Publish(t, src, a.RTMP+"/"+a.Key, true)
	var pl string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var ok bool
		if pl, ok = fetch200(media); ok && !strings.Contains(pl, "#EXT-X-ENDLIST") && strings.Count(pl, "#EXTINF") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B does not serve the new broadcast within 15 s:\n%s", pl)
		}
	}
	objects := mediaObjects(pl)
	kept := b.HTTP + "/hls/main/" + objects[len(objects)-1]
	if _, ok := fetch200(kept); !ok {
		t.Fatalf("node B does not serve %s", kept)
	}
	// Through node B's API: node B passes it to node A, which publishes the channel.
	takeDown(t, b, admin, "main", 60)
	start := time.Now()
	for {
		_, plOK := fetch200(media)
		_, objOK := fetch200(kept)
		if !plOK && !objOK {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("node B still serves the taken-down broadcast 3 s later (playlist %v, kept object %v)", plOK, objOK)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("taken-down broadcast gone from node B's origin %d ms after the takedown", took.Milliseconds())
	if took > time.Second+200*time.Millisecond {
		t.Errorf("gone from node B after %s, want within 1 s", took)
	}
	if ok, out := refused(t, src, a.RTMP+"/"+a.Key); !ok {
		t.Errorf("node A accepted the taken-down channel's publisher: %s", out)
	}
}

// TestClusterTopology runs what deploy/docker-compose.yml describes, with
// the same binaries and the edge's nginx template, as processes here (no
// Docker engine runs here): two ingest nodes (ingest, origin, web), two chat
// nodes and the nginx edge in front of them, on one Redis. A stream published
// to the second ingest node plays through the edge; chat through the edge
// and on each chat node reaches viewers on the other.
func TestClusterTopology(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe", "nginx")
	rurl := clusterRedis(t)
	const trusted = "127.0.0.1/32" // the edge's address, as the compose stack's ONAIR_TRUSTED_PROXIES
	ingestA := startNode(t, rurl, "ingest,origin,web", "--trusted-proxies", trusted)
	ingestB := startNode(t, rurl, "ingest,origin,web", "--trusted-proxies", trusted)
	chatA := startNode(t, rurl, "chat", "--trusted-proxies", trusted)
	chatB := startNode(t, rurl, "chat", "--trusted-proxies", trusted)
	for _, n := range []*Server{chatA, chatB} {
		if resp, err := http.Get(n.HTTP + "/hls/main/index.m3u8"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("a chat node answers HLS: %s", resp.Status)
			}
		}
	}
	servers := func(nodes ...*Server) string {
		var b strings.Builder
		for _, n := range nodes {
			fmt.Fprintf(&b, "server %s; ", strings.TrimPrefix(n.HTTP, "http://"))
		}
		return b.String()
	}
	edge := runEdge(t, "onair-edge-cluster.conf.template", freePort(t),
		"${EDGE_ORIGIN_SERVERS}", servers(ingestA, ingestB),
		"${EDGE_CHAT_SERVERS}", servers(chatA, chatB))

	src := Source{Width: 640, Height: 360, FPS: 30, Seconds: 12, Video: true, Audio: true}
	pub := Publish(t, sharedSource(t, src), ingestB.RTMP+"/"+ingestB.Key, false)
	playlist := edge + "/hls/main/index.m3u8"
	WaitHTTP(t, playlist, 20*time.Second)

	// Viewers on each chat node, and one through the edge.
	alice := mustOpenChat(t, chatA.HTTP, "main", "alice", "")
	bob := mustOpenChat(t, chatB.HTTP, "main", "bob", "")
	carol := mustOpenChat(t, edge, "main", "carol", "")
	alice.say(t, "hello from chat-a")
	carol.say(t, "hello through the edge")
	for _, c := range []*chatClient{alice, bob, carol} {
		c.waitForTexts(t, 5*time.Second, "hello from chat-a", "hello through the edge")
	}

	video, audio := probeFrames(t, playlist, 60*time.Second)
	if exited, err := pub.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("publisher: exited=%v err=%v\n%s", exited, err, pub.Output())
	}
	span := checkContinuous(t, "video", video, 1.0/30)
	if span < src.Seconds/2 || len(audio) == 0 {
		t.Errorf("through the edge: %.1f s of video, %d audio frames of a %.0f s stream", span, len(audio), src.Seconds)
	}
	// The directory, from either web node, lists the channel published on ingest-b.
	for _, n := range []*Server{ingestA, ingestB} {
		if _, body := Get(t, n.HTTP+"/api/v1/channels"); !strings.Contains(string(body), `"name":"main"`) {
			t.Errorf("%s lists no channel main: %s", n.HTTP, body)
		}
	}
	t.Logf("through the edge: %d video frames over %.2f s, %d audio frames; chat across both chat nodes and the edge", len(video), span, len(audio))
}
