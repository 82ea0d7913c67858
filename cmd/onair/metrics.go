package main

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry builds the app's Prometheus registry: one per app, never the
// client library's global one, so two apps in one process (the tests) do not
// share figures.
func (a *app) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(inTurn(a.collectors()))
	return reg
}

// inTurn collects its collectors one after another. A registry of several
// collectors gathers them in a varying number of goroutines, all counted in
// go_goroutines; registered as one, a scrape adds the same few to every
// sample, so leak checks (the e2e fault tests, `onair load abandon`) can
// compare samples. Every part's Collect is cheap, so nothing is lost.
type inTurn []prometheus.Collector

// Describe sends every collector's descriptions.
func (cs inTurn) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect collects every collector, in order.
func (cs inTurn) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// collectors are the app's metric sources. Each part is a prometheus.Collector
// reading the counters it keeps as it works (the media path pays nothing for
// a scrape); a new part adds itself here.
func (a *app) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		// go_goroutines, go_memstats_*, process_open_fds, process_resident_memory_bytes,
		// process_cpu_seconds_total and the rest, under the names dashboards know.
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.hub,
		a.seg,
		a.mod,
		a.chat,
		a.rec,
		&a.ready,
	}
	if a.events != nil {
		cs = append(cs, a.events.n)
	}
	cs = append(cs, a.http.collectors()...)
	if a.certs != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onair_ingest_tls_certificate_expiry_timestamp_seconds",
			Help: "When RTMPS's certificate in use expires (Unix time); it moves with each renewal onair takes."},
			func() float64 { return float64(a.certs.Certificate().Leaf.NotAfter.Unix()) }))
	}
	if a.cluster != nil && a.cluster.relay != nil {
		cs = append(cs, a.cluster.relay)
	}
	return cs
}

// metricsHandler serves reg at /metrics: the text format to any client that
// does not ask for another (curl, a plain http.Get), gzip only when asked. A
// collector's error is logged and the rest is still served.
func (a *app) metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{a},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// slogPrinter passes promhttp's errors to the app's log.
type slogPrinter struct{ a *app }

func (p slogPrinter) Println(v ...any) {
	p.a.log.Warn("metrics: gathering failed", "part", "metrics", "err", fmt.Sprint(v...))
}

// collectors are the HTTP server guards' metrics, read from their counters.
func (s *httpStats) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onair_http_connections",
			Help: "HTTP connections open, WebSocket chat included."},
			func() float64 { return float64(s.open.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "onair_http_connections_refused_total",
			Help: "HTTP connections refused because http-max-conns were open."},
			func() float64 { return float64(s.refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "onair_http_handler_panics_total",
			Help: "HTTP requests whose handler panicked (logged with a stack trace)."},
			func() float64 { return float64(s.panics.Load()) }),
	}
}

// The readiness metrics' descriptions.
var (
	descReady        = prometheus.NewDesc("onair_ready", "1 while /readyz answers 200, 0 once shutdown began.", nil, nil)
	descRoleDegraded = prometheus.NewDesc("onair_role_degraded",
		"1 while a role works only in part (chat: Redis unreachable, local rooms only; hls: the registry unreachable, only channels published here).",
		[]string{"role"}, nil)
)

// Describe sends the readiness metrics' descriptions (prometheus.Collector).
func (rd *readiness) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReady
	ch <- descRoleDegraded
}

// Collect sends whether the node is ready and which roles are degraded.
func (rd *readiness) Collect(ch chan<- prometheus.Metric) {
	ready := 1.0
	if rd.draining.Load() {
		ready = 0
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	for _, st := range rd.roles() {
		v := 0.0
		if st.degraded != "" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRoleDegraded, prometheus.GaugeValue, v, st.role)
	}
}
