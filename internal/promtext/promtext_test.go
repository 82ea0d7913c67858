package promtext

import (
	"errors"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	var b strings.Builder
	p := NewWriter(&b)
	p.Gauge("x_live", "Live things.", 3)
	p.Counter("x_total", "Things seen.", uint64(7))
	ByLabel(p, "x_by_reason_total", "counter", "Things by reason.", "reason", map[string]int64{"b": 2, "a": 1})
	p.Family("x_seconds", "summary", "Time spent.")
	p.Sample("x_seconds_sum", "", 1.5)
	want := `# HELP x_live Live things.
# TYPE x_live gauge
x_live 3
# HELP x_total Things seen.
# TYPE x_total counter
x_total 7
# HELP x_by_reason_total Things by reason.
# TYPE x_by_reason_total counter
x_by_reason_total{reason="a"} 1
x_by_reason_total{reason="b"} 2
# HELP x_seconds Time spent.
# TYPE x_seconds summary
x_seconds_sum 1.5
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(b []byte) (int, error) {
	f.n++
	return 0, errors.New("closed")
}

func TestWriterStopsAtFirstError(t *testing.T) {
	f := &failWriter{}
	p := NewWriter(f)
	p.Counter("a", "A.", 1)
	p.Counter("b", "B.", 2)
	if p.Err() == nil || f.n != 1 {
		t.Fatalf("err %v after %d writes, want an error after 1", p.Err(), f.n)
	}
}
