// Package promtext writes metrics in the Prometheus text exposition format, so
// that each part of onair can expose its counters on /metrics without a client
// library.
package promtext

import (
	"fmt"
	"io"
	"slices"
)

// Writer writes metric families to an io.Writer. It keeps the first write
// error and skips everything after it; Err reports it.
type Writer struct {
	w   io.Writer
	err error
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Err returns the first write error, if any.
func (p *Writer) Err() error { return p.err }

func (p *Writer) printf(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

// Family writes a family's HELP and TYPE lines; its samples follow with Sample.
func (p *Writer) Family(name, typ, help string) {
	p.printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// Sample writes one sample; labels is empty or like `kind="video"`.
func (p *Writer) Sample(name, labels string, v any) {
	if labels != "" {
		p.printf("%s{%s} %v\n", name, labels, v)
		return
	}
	p.printf("%s %v\n", name, v)
}

// Counter writes a family with a single counter sample.
func (p *Writer) Counter(name, help string, v any) {
	p.Family(name, "counter", help)
	p.Sample(name, "", v)
}

// Gauge writes a family with a single gauge sample.
func (p *Writer) Gauge(name, help string, v any) {
	p.Family(name, "gauge", help)
	p.Sample(name, "", v)
}

// ByLabel writes a family with one sample per key of values, in key order,
// each labelled label="key".
func ByLabel[V int | int64 | uint64 | float64](p *Writer, name, typ, help, label string, values map[string]V) {
	p.Family(name, typ, help)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.Sample(name, fmt.Sprintf("%s=%q", label, k), values[k])
	}
}
