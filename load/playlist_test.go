package load

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// What a player needs from an LL-HLS playlist: how to ask for the next
// part, and every segment and part with its position and init segment.
func TestParseMediaRefs(t *testing.T) {
	text := "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n" +
		"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.75\n" +
		"#EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-MEDIA-SEQUENCE:40\n#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n" +
		"#EXT-X-MAP:URI=\"tok_init.mp4\"\n" +
		"#EXTINF:1.0,\ntok_42.m4s\n" +
		"#EXT-X-PART:DURATION=0.25,URI=\"tok_43_0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.25,URI=\"tok_43_1.m4s\"\n" +
		"#EXTINF:0.5,\ntok_43.m4s\n" +
		"#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"new_init.mp4\"\n" +
		"#EXT-X-PART:DURATION=0.25,URI=\"new_44_0.m4s\"\n" +
		"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"new_44_1.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"other.m3u8\",LAST-MSN=44\n"
	var got []string
	p, err := parsePlaylist([]byte(text), func(r mediaRef) {
		got = append(got, fmt.Sprintf("%d/%d %s %s", r.msn, r.part, r.uri, r.init))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"42/-1 tok_42.m4s tok_init.mp4",
		"43/0 tok_43_0.m4s tok_init.mp4", "43/1 tok_43_1.m4s tok_init.mp4", "43/-1 tok_43.m4s tok_init.mp4",
		"44/0 new_44_0.m4s new_init.mp4",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("refs\n%q\nwant\n%q", got, want)
	}
	wantPL := playlist{target: time.Second, partTarget: 250 * time.Millisecond, canBlock: true, canSkip: true, seq: 40, segments: 4, parts: 1}
	if p != wantPL {
		t.Errorf("%+v, want %+v", p, wantPL)
	}
	if n := p.newest(); n != (newest{next: 44, parts: 1}) {
		t.Errorf("newest %+v: the next blocking reload asks for 44 part 1", n)
	}
}

func TestAttr(t *testing.T) {
	list := []byte(`TYPE=PART,URI="a,b=c.m4s",DURATION=0.25, INDEPENDENT=YES`)
	for key, want := range map[string]string{"TYPE": "PART", "URI": `"a,b=c.m4s"`, "DURATION": "0.25", "INDEPENDENT": "YES", "GAP": ""} {
		if got := string(attr(list, key)); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if v := attr([]byte(`URI="unterminated`), "URI"); v != nil {
		t.Errorf("unterminated quote: %q, want nil", v)
	}
}

func TestPositionFollows(t *testing.T) {
	cases := []struct {
		a, b position
		want bool
	}{
		{position{5, 1}, position{5, 0}, true},
		{position{5, 2}, position{5, 0}, false}, // part 1 skipped
		{position{6, 0}, position{5, 3}, true},  // the next segment's first part
		{position{6, 1}, position{5, 3}, false},
		{position{7, 0}, position{5, 3}, false}, // a whole segment skipped
		{position{5, 0}, position{5, -1}, true}, // the first part after joining
		{position{6, -1}, position{5, -1}, true},
		{position{8, -1}, position{6, -1}, false},
	}
	for _, c := range cases {
		if got := c.a.follows(c.b); got != c.want {
			t.Errorf("%v follows %v: %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
