package ingest

import (
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	type in struct {
		k   Kind
		raw uint32
	}
	tests := []struct {
		name string
		base time.Duration
		in   []in
		want []time.Duration
	}{
		{name: "rebased to zero", in: []in{{KindVideo, 5000}, {KindAudio, 5010}, {KindVideo, 5033}}, want: []time.Duration{0, ms(10), ms(33)}},
		{name: "rebased to base", base: ms(1000), in: []in{{KindVideo, 77}, {KindVideo, 110}}, want: []time.Duration{ms(1000), ms(1033)}},
		{name: "32-bit wrap", in: []in{{KindVideo, 0xffffffe0}, {KindVideo, 0xfffffff0}, {KindVideo, 0x10}, {KindVideo, 0x30}},
			want: []time.Duration{0, ms(16), ms(48), ms(80)}},
		{name: "small backward jitter held", in: []in{{KindAudio, 100}, {KindAudio, 123}, {KindAudio, 120}, {KindAudio, 146}},
			want: []time.Duration{0, ms(23), ms(23), ms(46)}},
		{name: "reset re-anchors after last", in: []in{{KindVideo, 90000}, {KindVideo, 90033}, {KindVideo, 0}, {KindVideo, 33}},
			want: []time.Duration{0, ms(33), ms(66), ms(99)}},
		{name: "huge forward jump re-anchors", in: []in{{KindVideo, 0}, {KindVideo, 40}, {KindVideo, 3_600_000}, {KindVideo, 3_600_040}},
			want: []time.Duration{0, ms(40), ms(80), ms(120)}},
		{name: "kinds independent but share the clock", in: []in{{KindVideo, 1000}, {KindAudio, 990}, {KindAudio, 1013}, {KindVideo, 1033}},
			want: []time.Duration{0, ms(-10), ms(13), ms(33)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline(tt.base)
			for i, x := range tt.in {
				if got := tl.dts(x.k, x.raw); got != tt.want[i] {
					t.Fatalf("unit %d (raw %d): dts %v, want %v", i, x.raw, got, tt.want[i])
				}
			}
		})
	}
}

func TestTimelineNext(t *testing.T) {
	tl := newTimeline(0)
	if tl.next() != 0 {
		t.Fatal("unstarted next")
	}
	for _, r := range []uint32{100, 133, 166} {
		tl.dts(KindVideo, r)
	}
	tl.dts(KindAudio, 170)
	if got, want := tl.next(), 70*time.Millisecond+33*time.Millisecond; got != want {
		t.Fatalf("next %v, want %v", got, want)
	}
	// A reconnecting session continues from there.
	tl2 := newTimeline(tl.next())
	if got := tl2.dts(KindVideo, 0); got != 103*time.Millisecond {
		t.Fatalf("continued dts %v", got)
	}
}
