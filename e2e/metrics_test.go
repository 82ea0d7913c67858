package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/onairhq/onair/segmenter/hlscheck"
)

// scrape is one parse of /metrics: every family by name.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs /metrics the way curl does (no Accept, no gzip) and
// parses it with Prometheus's own text parser, checking what a Prometheus
// server relies on: the text format, a TYPE for every family, counters
// named _total.
func scrapeMetrics(t testing.TB, s *Server) scrape {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.HTTP+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "identity") // no transparent gzip: read what curl reads
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain; version=0.0.4") || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("metrics: %d, Content-Type %q, Content-Encoding %q", resp.StatusCode, ct, resp.Header.Get("Content-Encoding"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse as the Prometheus text format: %v", err)
	}
	for name, mf := range mfs {
		switch typ := mf.GetType(); {
		case typ == dto.MetricType_UNTYPED:
			t.Errorf("%s has no TYPE line", name)
		case typ == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total"):
			t.Errorf("counter %s does not end in _total", name)
		case typ != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total"):
			t.Errorf("%s ends in _total but is a %s", name, typ)
		}
	}
	return mfs
}

// sum adds the values of a family's samples whose labels include every
// name=value pair given; 0 when the family is absent.
func (sc scrape) sum(name string, labels ...string) float64 {
	total := 0.0
	mf := sc[name]
	if mf == nil {
		return 0
	}
samples:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !found {
				continue samples
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			total += float64(m.GetSummary().GetSampleCount())
		}
	}
	return total
}

// TestMetricsMove scrapes /metrics before, during and after a publish that
// has chat traffic and an LL-HLS reader, and checks the figures moved: ingest,
// packaging, the origin and chat each count what they did.
func TestMetricsMove(t *testing.T) {
	needTools(t, "ffmpeg")
	srv := StartServer(t)
	before := scrapeMetrics(t, srv)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "onair_ready", "onair_chat_bus_up"} {
		if before[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if v := before.sum("onair_ingest_active_publishers"); v != 0 {
		t.Fatalf("%v publishers before publishing", v)
	}

	pub := Publish(t, sharedSource(t, Source{Width: 640, Height: 360, FPS: 30, Seconds: 10, Video: true, Audio: true}),
		srv.RTMP+"/"+srv.Key, false)
	WaitHTTP(t, srv.HTTP+"/hls/main/index.m3u8", 15*time.Second)

	// An LL-HLS player: blocking reloads, and the parts they list.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &playlistWatcher{url: mediaPlaylistURL(t, srv.HTTP, "main"), block: true}
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()

	alice := mustOpenChat(t, srv.HTTP, "main", "alice", "")
	bob := mustOpenChat(t, srv.HTTP, "main", "bob", "")
	for i := range 3 {
		alice.say(t, fmt.Sprintf("alice %d", i))
		bob.say(t, fmt.Sprintf("bob %d", i))
	}
	bob.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "alice 2" })
	alice.waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "bob 2" })

	// Fetch the parts the newest playlist lists.
	time.Sleep(2 * time.Second)
	_, body := Get(t, w.url)
	pl, err := hlscheck.Parse(body)
	if err != nil || len(pl.Parts) == 0 {
		t.Fatalf("media playlist (%v) lists no parts:\n%s", err, body)
	}
	base := w.url[:strings.LastIndexByte(w.url, '/')+1]
	for _, p := range pl.Parts {
		if resp, _ := Get(t, base+p.URI); resp.StatusCode != http.StatusOK {
			t.Errorf("part %s: %d", p.URI, resp.StatusCode)
		}
	}

	during := scrapeMetrics(t, srv)
	rose := func(name string, labels ...string) {
		t.Helper()
		b, d := before.sum(name, labels...), during.sum(name, labels...)
		if d <= b {
			t.Errorf("%s%v did not rise during the publish: %v then %v", name, labels, b, d)
		} else {
			t.Logf("%s%v: %v → %v", name, labels, b, d)
		}
	}
	is := func(sc scrape, want float64, name string, labels ...string) {
		t.Helper()
		if v := sc.sum(name, labels...); v != want {
			t.Errorf("%s%v = %v, want %v", name, labels, v, want)
		}
	}
	is(during, 1, "onair_ingest_active_publishers")
	is(during, 1, "onair_ingest_live_broadcasts")
	is(during, 1, "onair_hls_streams_live")
	is(during, 2, "onair_chat_connections")
	is(during, 1, "onair_chat_rooms")
	rose("onair_ingest_received_bytes_total")
	rose("onair_ingest_broadcasts_started_total")
	rose("onair_ingest_publish_accept_seconds")
	rose("onair_hls_access_units_total", "kind", "video")
	rose("onair_hls_access_units_total", "kind", "audio")
	rose("onair_hls_segments_total")
	rose("onair_hls_parts_total")
	rose("onair_hls_part_bytes_total")
	rose("onair_hls_part_publish_seconds")
	rose("onair_hls_requests_total", "kind", "playlist", "code", "200")
	rose("onair_hls_requests_total", "kind", "part", "code", "200")
	rose("onair_hls_response_bytes_total")
	rose("onair_chat_messages_total")
	rose("onair_chat_frames_total")
	rose("onair_chat_deliveries_total")
	rose("onair_http_connections")
	if d := during.sum("onair_chat_messages_total") - before.sum("onair_chat_messages_total"); d != 6 {
		t.Errorf("%v chat messages counted, want the 6 sent", d)
	}

	if exited, err := pub.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("publisher: exited=%v err=%v\n%s", exited, err, pub.Output())
	}
	// The broadcast ends once the publisher's reconnect grace is over.
	deadline := time.Now().Add(20 * time.Second)
	var after scrape
	for {
		after = scrapeMetrics(t, srv)
		if after.sum("onair_ingest_broadcasts_ended_total", "reason", "stopped") > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	<-done
	w.report(t)
	is(after, 0, "onair_ingest_active_publishers")
	is(after, 0, "onair_ingest_live_broadcasts")
	is(after, 1, "onair_ingest_broadcasts_ended_total", "reason", "stopped")
	if a, d := after.sum("onair_ingest_received_bytes_total"), during.sum("onair_ingest_received_bytes_total"); a < d {
		t.Errorf("received bytes went back: %v then %v", d, a)
	}
}
