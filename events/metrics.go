package events

import "github.com/prometheus/client_golang/prometheus"

var (
	queuedDesc = prometheus.NewDesc("onair_events_queued",
		"Events waiting for delivery to the events webhook, the one being delivered included.", nil, nil)
	deliveredDesc = prometheus.NewDesc("onair_events_delivered_total",
		"Events the events webhook accepted (2xx).", nil, nil)
	failedDesc = prometheus.NewDesc("onair_events_failed_attempts_total",
		"Delivery attempts that failed (connection error, timeout, 3xx, 5xx, 408, 429) and are retried.", nil, nil)
	droppedDesc = prometheus.NewDesc("onair_events_dropped_total",
		"Events never delivered: overflow (the queue was full and they were the oldest) or refused (the webhook answered 4xx).",
		[]string{"reason"}, nil)
)

var _ prometheus.Collector = (*Notifier)(nil)

// Describe implements prometheus.Collector.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- deliveredDesc
	ch <- failedDesc
	ch <- droppedDesc
}

// Collect implements prometheus.Collector.
func (n *Notifier) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(n.Queued()))
	ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(n.delivered.Load()))
	ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(n.failed.Load()))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(n.overflow.Load()), "overflow")
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(n.refused.Load()), "refused")
}

// Stats are a Notifier's counts.
type Stats struct {
	Queued                          int
	Delivered, FailedAttempts       uint64
	DroppedOverflow, DroppedRefused uint64
}

// Stats returns the Notifier's counts.
func (n *Notifier) Stats() Stats {
	return Stats{Queued: n.Queued(), Delivered: n.delivered.Load(), FailedAttempts: n.failed.Load(),
		DroppedOverflow: n.overflow.Load(), DroppedRefused: n.refused.Load()}
}
