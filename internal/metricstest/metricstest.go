// Package metricstest writes a Prometheus collector's figures in the text
// exposition format, for tests that read a part's metrics by name.
package metricstest

import (
	"bytes"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Write gathers c through a pedantic registry (which also checks that c
// describes every metric it collects, consistently) and writes the text
// format to w.
func Write(w io.Writer, c prometheus.Collector) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// Text is Write into a string; an error becomes the text itself, so a test's
// failure message shows it.
func Text(c prometheus.Collector) string {
	var b bytes.Buffer
	if err := Write(&b, c); err != nil {
		return "metrics: " + err.Error()
	}
	return b.String()
}
