package hlscheck

import (
	"fmt"
	"strings"
	"testing"
)

// pl builds a media playlist: target, sequence, then segment durations; a
// negative duration marks a gap.
func pl(target int, seq int, extra string, durs ...float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-TARGETDURATION:%d\n%s#EXT-X-MEDIA-SEQUENCE:%d\n", target, extra, seq)
	for i, d := range durs {
		if d < 0 {
			fmt.Fprintf(&b, "#EXT-X-GAP\n#EXTINF:%.5f,\ngap.mp4\n", -d)
			continue
		}
		fmt.Fprintf(&b, "#EXTINF:%.5f,\nseg%d.mp4\n", d, seq+i)
	}
	return b.String()
}

// ll6 advertises delta updates for a one-second target.
const ll6 = "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6\n#EXT-X-PART-INF:PART-TARGET=0.200\n"

// partsSeg is an LL playlist with one segment made of parts of the given
// durations; its EXTINF is their sum plus extra.
func partsSeg(extra float64, durs ...float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n%s#EXT-X-MEDIA-SEQUENCE:0\n", ll6)
	sum := extra
	for i, d := range durs {
		fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%.3f,URI=\"p%d.mp4\"\n", d, i)
		sum += d
	}
	fmt.Fprintf(&b, "#EXTINF:%.3f,\nseg0.mp4\n", sum)
	return b.String()
}

// delta is pl for a delta update that skipped the first skipped segments.
func delta(target, seq, skipped int, durs ...float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-TARGETDURATION:%d\n%s#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", target, ll6, seq, skipped)
	for i, d := range durs {
		fmt.Fprintf(&b, "#EXTINF:%.5f,\nseg%d.mp4\n", d, seq+skipped+i)
	}
	return b.String()
}

const ll = "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=12\n#EXT-X-PART-INF:PART-TARGET=0.200\n"

func TestChecker(t *testing.T) {
	tests := []struct {
		name    string
		reloads []string
		want    string // substring of the error; "" means valid
	}{
		{"steady", []string{pl(2, 0, "", 2, 2, 2), pl(2, 1, "", 2, 2, 2), pl(2, 2, "", 2, 2, 2, 1.9)}, ""},
		{"gaps repeat their URI", []string{pl(2, 0, "", -2, -2, 2), pl(2, 1, "", -2, 2, 2)}, ""},
		{"rounding to target is fine", []string{pl(2, 0, "", 2.49, 2, 2)}, ""},
		{"extinf over target", []string{pl(2, 0, "", 2.5, 2, 2)}, "rounds to 3"},
		{"target changes", []string{pl(2, 0, "", 2, 2, 2), pl(3, 1, "", 2, 2, 3)}, "TARGETDURATION changed"},
		{"sequence goes back", []string{pl(2, 5, "", 2, 2, 2), pl(2, 4, "", 2, 2, 2)}, "went back"},
		{"short window after sliding", []string{pl(2, 0, "", 2, 2), pl(2, 1, "", 2, 2)}, "less than 3 target durations"},
		{"short window at start is fine", []string{pl(2, 0, "", 2), pl(2, 0, "", 2, 2)}, ""},
		{"uri reused", []string{pl(2, 0, "", 2, 2, 2), strings.Replace(pl(2, 1, "", 2, 2, 2), "seg3.mp4", "seg1.mp4", 1)}, "reused"},
		{"ll good", []string{pl(2, 0, ll, 2, 2, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4\"\n"}, ""},
		{"part over part target", []string{pl(2, 0, ll, 2, 2, 2) + "#EXT-X-PART:DURATION=0.23340,URI=\"p1.mp4\"\n"}, "PART-TARGET"},
		{"part hold back too small", []string{pl(2, 0, strings.Replace(ll, "0.600", "0.500", 1), 2, 2, 2)}, "PART-HOLD-BACK"},
		{"part uri reused", []string{pl(2, 0, ll, 2, 2, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n", pl(2, 0, ll, 2, 2, 2) + "#EXT-X-PART:DURATION=0.1,URI=\"p1.mp4\"\n"}, "part URI"},
		{"ended with preload hint", []string{pl(2, 0, ll, 2, 2, 2) + "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4\"\n#EXT-X-ENDLIST\n"}, "PRELOAD-HINT"},
		{"parts sum to extinf", []string{partsSeg(0, 0.2, 0.2, 0.2)}, ""},
		{"parts disagree with extinf", []string{partsSeg(0.3, 0.2, 0.2, 0.2)}, "its parts last"},
		{"short part inside a segment", []string{partsSeg(0, 0.1, 0.2, 0.2)}, "85%"},
		{"short last part is fine", []string{partsSeg(0, 0.2, 0.2, 0.05)}, ""},
		{"two hints", []string{pl(2, 0, ll, 2) + "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"b.mp4\"\n"}, "PRELOAD-HINT tags"},
		{"hint honoured", []string{
			pl(2, 0, ll, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4\"\n",
			pl(2, 0, ll, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n"}, ""},
		{"hint not honoured", []string{
			pl(2, 0, ll, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4\"\n",
			pl(2, 0, ll, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"other.mp4\"\n"}, "hinted as p1.mp4"},
		{"hint names a listed part", []string{pl(2, 0, ll, 2) + "#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p0.mp4\"\n"}, "already listed"},
		{"skip inside can-skip-until", []string{pl(1, 0, ll6, 1, 1, 1, 1, 1, 1, 1), delta(1, 0, 3, 1, 1, 1, 1)}, "inside CAN-SKIP-UNTIL"},
		{"skip of unseen segments", []string{delta(1, 0, 2, 1, 1, 1, 1, 1, 1, 1)}, "no earlier reload listed"},
		{"skip good", []string{pl(1, 0, ll6, 1, 1, 1, 1, 1, 1, 1, 1), delta(1, 0, 2, 1, 1, 1, 1, 1, 1)}, ""},
		{"can-skip-until too small", []string{pl(2, 0, ll6, 2)}, "CAN-SKIP-UNTIL"},
		{"discontinuity sequence back", []string{pl(2, 0, "#EXT-X-DISCONTINUITY-SEQUENCE:4\n", 2, 2, 2), pl(2, 1, "#EXT-X-DISCONTINUITY-SEQUENCE:3\n", 2, 2, 2)}, "DISCONTINUITY-SEQUENCE went back"},
		{"discontinuity renumbered", []string{
			pl(2, 0, "#EXT-X-DISCONTINUITY-SEQUENCE:0\n", 2, 2, 2),
			strings.Replace(pl(2, 0, "#EXT-X-DISCONTINUITY-SEQUENCE:0\n", 2, 2, 2), "#EXTINF:2.00000,\nseg1.mp4", "#EXT-X-DISCONTINUITY\n#EXTINF:2.00000,\nseg1.mp4", 1)}, "discontinuity number changed"},
		{"not a playlist", []string{"hello"}, "#EXTM3U"},
		{"no target", []string{"#EXTM3U\n#EXTINF:2,\na.mp4\n"}, "TARGETDURATION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Checker
			var err error
			for _, r := range tt.reloads {
				if e := c.Check([]byte(r)); e != nil {
					err = e
				}
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected violation: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("want a violation containing %q, got none", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("want a violation containing %q, got %v", tt.want, err)
			}
		})
	}
}

func TestParseMSN(t *testing.T) {
	p, err := Parse([]byte(pl(2, 10, "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n", 2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Segments[0].MSN != 13 || p.Segments[1].MSN != 14 || p.Skipped != 3 {
		t.Fatalf("MSNs %d %d skipped %d", p.Segments[0].MSN, p.Segments[1].MSN, p.Skipped)
	}
}
