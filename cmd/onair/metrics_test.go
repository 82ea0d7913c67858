package main

import (
	"encoding/json"
	"fmt"
	"github.com/onairhq/onair/ingest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/onairhq/onair/events"
	"github.com/onairhq/onair/relay"
)

// newTestApp builds a real app (every role, in-memory chat) with n channels.
func newTestApp(t testing.TB, n int) *app {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	channels := make([]ingest.ChannelConfig, n)
	for i := range channels {
		channels[i] = ingest.ChannelConfig{Name: fmt.Sprintf("ch%d", i), Keys: []string{fmt.Sprintf("key-%d-0123456789abcdef", i)}}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newApp(cfg, "0123456789abcdef0123456789abcdef", "admin-token-0123456789abcdef", channels, nil, "http://127.0.0.1:8080", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a
}

// describedNames are the metric families the app's collectors describe: all
// it can ever expose, including labelled families with no sample yet.
func describedNames(a *app, more ...prometheus.Collector) map[string]bool {
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range append(a.collectors(), more...) {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	return names
}

// /metrics answers the text format to a plain client, with families that
// Prometheus's parser reads and promlint accepts.
func TestMetricsEndpoint(t *testing.T) {
	a := newTestApp(t, 2)
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds",
		"process_resident_memory_bytes", "onair_ingest_received_bytes_total", "onair_hls_parts_total",
		"onair_moderation_frames_screened_total", "onair_chat_messages_total", "onair_ready", "onair_http_connections"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	for name, mf := range mfs {
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	var onair []string
	for name := range describedNames(a) {
		if strings.HasPrefix(name, "onair_") {
			onair = append(onair, name)
		}
	}
	problems, err := testutil.GatherAndLint(a.metrics, onair...)
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}

	// A Prometheus server asking for gzip gets it; the figures are the same.
	req.Header.Set("Accept-Encoding", "gzip")
	resp2, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("asked for gzip, got Content-Encoding %q", resp2.Header.Get("Content-Encoding"))
	}
}

// grafanaDashboard is the part of Grafana's JSON model the test reads.
type grafanaDashboard struct {
	Inputs []struct {
		Name string `json:"name"`
	} `json:"__inputs"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

// The dashboard in deploy/ asks only for metrics a real app exposes, so it
// cannot drift from the code.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/onair-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) == 0 || d.Inputs[0].Name != "DS_PROMETHEUS" {
		t.Errorf("no DS_PROMETHEUS data source input: %+v", d.Inputs)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
	}) bool {
		return v.Name == "node"
	}) {
		t.Error("no node template variable")
	}

	// The relay runs only on origins with redis-url, the events webhook's
	// notifier only with events-webhook: describe them apart.
	n, err := events.New(events.Options{URL: "http://127.0.0.1:9/", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	have := describedNames(newTestApp(t, 1), relay.New(relay.Options{}), n)
	metric := regexp.MustCompile(`\b(?:onair|go|process)_[a-z0-9_]+\b`)
	used := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, n := range names {
				used++
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && have[b] {
						base = b
					}
				}
				if !have[base] {
					t.Errorf("panel %q asks for %s, which onair does not expose", p.Title, n)
				}
			}
		}
	}
	t.Logf("%d panels, %d metric references checked", len(d.Panels), used)
}

// BenchmarkScrape measures one /metrics answer of an app with 400 channels.
func BenchmarkScrape(b *testing.B) {
	a := newTestApp(b, 400)
	h := a.routes()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkGatherParts measures gathering onair's own collectors alone (no Go
// runtime or /proc figures) for an app with 400 channels.
func BenchmarkGatherParts(b *testing.B) {
	a := newTestApp(b, 400)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.collectors()[2:]...) // after the Go and process collectors
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
