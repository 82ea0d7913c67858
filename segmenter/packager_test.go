package segmenter

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/testmedia"
	"github.com/onairhq/onair/segmenter/hlscheck"
)

func testConfig(t testing.TB, o Options) *config {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &s.cfg
}

// packageClip runs units through a packager synchronously and checks every
// playlist version it produces with hlscheck (and gohlslib's parser). A
// non-nil sink receives the media as a recording would.
func packageClip(t *testing.T, cfg *config, tracks ingest.Tracks, units []ingest.AccessUnit, sink Sink) (*window, *hlscheck.Checker) {
	t.Helper()
	var m metrics
	w := newWindow(cfg, 1000, 0)
	b := &ingest.Broadcast{ID: "b1", Channel: "ch", Tracks: tracks, Started: time.Now()}
	p, err := newPackager(cfg, &m, w, b, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if sink != nil {
		p.record = func(*ingest.Broadcast, []byte) Sink { return sink }
	}
	var c hlscheck.Checker
	last := uint64(0)
	check := func() {
		w.mu.Lock()
		v := w.version
		var body []byte
		if w.hasPartsLocked() || w.ended {
			body = w.playlistLocked(false).body
		}
		w.mu.Unlock()
		if v == last || body == nil {
			return
		}
		last = v
		if err := c.Check(body); err != nil {
			t.Fatalf("version %d: %v\n%s", v, err, body)
		}
		var pl playlist.Media
		if p, _ := hlscheck.Parse(body); len(p.Segments) == 0 {
			return // gohlslib's parser wants a complete segment
		}
		if err := pl.Unmarshal(body); err != nil {
			t.Fatalf("gohlslib cannot parse version %d: %v\n%s", v, err, body)
		}
	}
	for _, au := range units {
		au.Received = time.Now()
		var err error
		if au.Kind == ingest.KindVideo {
			if tracks.Video != nil {
				err = p.writeVideo(au)
			}
		} else if tracks.Audio != nil {
			err = p.writeAudio(au)
		}
		if err != nil {
			t.Fatal(err)
		}
		check()
	}
	p.finish(true)
	check()
	return w, &c
}

// TestPackagerCutting packages real encoded clips and checks, at every
// playlist version, the RFC 8216bis rules hlscheck knows, then the cutting
// rules: segments at keyframes when the keyframe interval allows, never
// longer than the target, parts no longer than PART-TARGET.
func TestPackagerCutting(t *testing.T) {
	cases := []struct {
		name      string
		spec      testmedia.Spec
		opts      Options
		wantSegs  time.Duration // typical segment length
		indepSegs bool          // every segment starts with a keyframe
	}{
		{"1s GOP with audio", testmedia.Spec{Seconds: 10, Video: true, Audio: true}, Options{}, time.Second, true},
		{"2s GOP cut between keyframes", testmedia.Spec{Seconds: 10, Video: true, Audio: true, GOP: 60}, Options{}, time.Second, false},
		{"1.2s GOP waits for keyframes", testmedia.Spec{Seconds: 10, Video: true, GOP: 36}, Options{}, 1200 * time.Millisecond, true},
		{"0.5s GOP", testmedia.Spec{Seconds: 6, Video: true, Audio: true, GOP: 15}, Options{}, time.Second, true},
		{"60 fps", testmedia.Spec{Seconds: 5, Video: true, FPS: 60}, Options{}, time.Second, true},
		{"25 fps 2s segments", testmedia.Spec{Seconds: 10, Video: true, FPS: 25, GOP: 50}, Options{SegmentDuration: 2 * time.Second}, 2 * time.Second, true},
		{"24 fps", testmedia.Spec{Seconds: 6, Video: true, Audio: true, FPS: 24}, Options{}, time.Second, true},
		{"12 fps", testmedia.Spec{Seconds: 6, Video: true, FPS: 12}, Options{}, time.Second, true},
		{"audio only", testmedia.Spec{Seconds: 6, Audio: true}, Options{}, time.Second, true},
		{"fmp4 variant", testmedia.Spec{Seconds: 6, Video: true, Audio: true}, Options{Variant: VariantFMP4}, time.Second, true},
		{"mpegts variant", testmedia.Spec{Seconds: 6, Video: true, Audio: true}, Options{Variant: VariantMPEGTS}, time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clip := testmedia.Make(t, tc.spec)
			cfg := testConfig(t, tc.opts)
			w, c := packageClip(t, cfg, clip.Tracks, clip.Units, nil)
			if c.Reloads() < 3 {
				t.Fatalf("only %d playlist versions", c.Reloads())
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			body := w.playlistLocked(false).body
			pl, err := hlscheck.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if !pl.Ended || len(pl.Segments) == 0 {
				t.Fatalf("final playlist:\n%s", body)
			}
			if fps := tc.spec.FPS; tc.spec.Video && pl.PartTarget > 0 {
				// PART-TARGET: the whole number of frames nearest the part
				// length, and the millisecond RTMP's timestamps may add.
				if fps == 0 {
					fps = 30
				}
				frame := time.Second / time.Duration(fps)
				frames := (cfg.part + frame/2) / frame * frame
				if d := pl.PartTarget - frames; d <= 0 || d > 2*time.Millisecond {
					t.Errorf("PART-TARGET %v for parts of %v", pl.PartTarget, frames)
				}
			}
			var total time.Duration
			for i, s := range w.segs {
				total += s.dur
				if i < len(w.segs)-1 && math.Abs((s.dur-tc.wantSegs).Seconds()) > 0.07 {
					t.Errorf("segment %d lasts %v, want about %v", s.msn, s.dur, tc.wantSegs)
				}
				if len(s.parts) == 0 {
					t.Fatalf("segment %d has no parts", s.msn)
				}
				if tc.indepSegs && !s.parts[0].independent {
					t.Errorf("segment %d does not start with a keyframe", s.msn)
				}
				for j, p := range s.parts {
					if p.dur > w.partTarget {
						t.Errorf("segment %d part %d lasts %v > PART-TARGET %v", s.msn, j, p.dur, w.partTarget)
					}
				}
			}
			if !tc.indepSegs {
				indep := 0
				for _, s := range w.segs {
					if s.parts[0].independent {
						indep++
					}
				}
				if indep == 0 || indep == len(w.segs) {
					t.Errorf("%d of %d segments start with a keyframe; want some, not all", indep, len(w.segs))
				}
			}
			if cfg.mpegts != (pl.Maps == 0) {
				t.Errorf("%d EXT-X-MAP tags in the %s variant", pl.Maps, map[bool]string{true: "mpegts", false: "fMP4"}[cfg.mpegts])
			}
			t.Logf("%d versions, %d segments in the window (%v), %d parts in the last, PART-TARGET %v", c.Reloads(), len(w.segs), total, len(w.segs[len(w.segs)-1].parts), w.partTarget)
		})
	}
}

// TestTimestampJump: a forward jump in the publisher's clock starts a new
// segment after a discontinuity instead of stretching one past the target.
func TestTimestampJump(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 4, Video: true, Audio: true})
	cases := []struct {
		name      string
		jump      time.Duration
		atKey     bool // the jump comes just before a keyframe, as after a reconnect
		wantDiscs int
	}{
		{"a clock jump between keyframes", 5 * time.Second, false, 1},
		{"a reconnect: a gap its part cannot hold, then a keyframe", 180 * time.Millisecond, true, 1},
		{"a stall between keyframes: a hole, no discontinuity", 180 * time.Millisecond, false, 0},
		{"jitter a part can hold", 5 * time.Millisecond, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			units := append([]ingest.AccessUnit(nil), clip.Units...)
			at := len(units) / 2
			for at < len(units) && !(units[at].Kind == ingest.KindVideo && units[at].Key == c.atKey) {
				at++
			}
			for i := at; i < len(units); i++ {
				units[i].DTS += c.jump
				units[i].PTS += c.jump
			}
			// packageClip checks every playlist version: parts within
			// PART-TARGET, parts adding up to EXTINF, discontinuity numbering.
			w, _ := packageClip(t, testConfig(t, Options{}), clip.Tracks, units, nil)
			w.mu.Lock()
			body := w.playlistLocked(false).body
			w.mu.Unlock()
			pl, err := hlscheck.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			discs := 0
			for _, s := range pl.Segments {
				if s.Discontinuity {
					discs++
				}
			}
			if discs != c.wantDiscs {
				t.Fatalf("%d discontinuities, want %d:\n%s", discs, c.wantDiscs, body)
			}
		})
	}
}

// partLog is a Sink that keeps what it is told of each part.
type partLog struct{ parts []partCall }

type partCall struct {
	dur               time.Duration
	first, last, disc bool
}

func (l *partLog) Part(_ []byte, dur time.Duration, first, last, disc bool, _ time.Time) {
	l.parts = append(l.parts, partCall{dur, first, last, disc})
}

func (l *partLog) End(ingest.EndReason) {}

// TestReturningPublisher: the first keyframe of a publisher that returned
// within the grace period starts a segment, even where the segment is too
// short to end at a keyframe otherwise; the recording gets a discontinuity
// there, the live playlist none.
func TestReturningPublisher(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 4, Video: true, Audio: true, GOP: 15})
	units := append([]ingest.AccessUnit(nil), clip.Units...)
	at := -1
	for i, u := range units {
		if u.Kind == ingest.KindVideo && u.Key && u.DTS >= 1500*time.Millisecond {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatal("no keyframe at 1.5 s")
	}
	units[at].Discontinuity = true
	var rec partLog
	w, _ := packageClip(t, testConfig(t, Options{}), clip.Tracks, units, &rec)
	w.mu.Lock()
	body := w.playlistLocked(false).body
	w.mu.Unlock()
	if bytes.Contains(body, []byte("#EXT-X-DISCONTINUITY\n")) {
		t.Errorf("a discontinuity in the live playlist:\n%s", body)
	}
	var start time.Duration
	discs := 0
	for _, p := range rec.parts {
		if p.first && p.disc {
			discs++
			if start != units[at].DTS-units[0].DTS {
				t.Errorf("the recording's discontinuity at %v, want at the returning keyframe, %v", start, units[at].DTS-units[0].DTS)
			}
		}
		start += p.dur
	}
	if discs != 1 {
		t.Errorf("%d discontinuities in the recording, want 1", discs)
	}
}

// TestPartsWithinTargetWhenTimestampsWobble: RTMP's millisecond timestamps
// of 30 fps video step 33, 33, 34 ms; where that rhythm slips (a source
// looped, an encoder's clock), two 34 ms steps meet and six frames come to
// 201 ms. Wherever that falls in a part, no part exceeds PART-TARGET and none
// but a segment's last falls under 85 % of it (packageClip checks every
// version).
func TestPartsWithinTargetWhenTimestampsWobble(t *testing.T) {
	clip := testmedia.Make(t, testmedia.Spec{Seconds: 2, Video: true, Audio: true})
	var video []int
	for i, u := range clip.Units {
		if u.Kind == ingest.KindVideo {
			video = append(video, i)
		}
	}
	for k := 12; k < 18; k++ {
		// A 33 ms step made 34 ms, next to a 34 ms one: the rest a millisecond later.
		step := clip.Units[video[k]].DTS - clip.Units[video[k-1]].DTS
		next := clip.Units[video[k+1]].DTS - clip.Units[video[k]].DTS
		prev := clip.Units[video[k-1]].DTS - clip.Units[video[k-2]].DTS
		if step != 33*time.Millisecond || next != 34*time.Millisecond && prev != 34*time.Millisecond {
			continue
		}
		units := append([]ingest.AccessUnit(nil), clip.Units...)
		for i := video[k]; i < len(units); i++ {
			units[i].DTS += time.Millisecond
			units[i].PTS += time.Millisecond
		}
		packageClip(t, testConfig(t, Options{}), clip.Tracks, units, nil)
	}
}

// TestWindowBlocking is the blocking-reload arithmetic of rfc8216bis.
func TestWindowBlocking(t *testing.T) {
	cfg := testConfig(t, Options{})
	w := newWindow(cfg, 100, 0)
	r := &rendition{token: "abcdefgh"}
	p := func() *part { return &part{data: []byte{1}, dur: 200 * time.Millisecond} }
	s100 := &segment{r: r}
	w.open(s100)
	for range 4 {
		w.addPart(s100, p(), nil)
	}
	s101 := &segment{r: r}
	w.addPart(s100, p(), s101) // 100 complete with 5 parts; 101 open
	w.addPart(s101, p(), nil)  // 101 has part 0

	cases := []struct {
		msn       uint64
		part      int
		hasPart   bool
		satisfied bool
		tooFar    bool
	}{
		{99, 0, false, true, false},
		{100, 0, false, true, false},
		{101, 0, false, false, false}, // 101 is not complete
		{100, 4, true, true, false},
		{100, 5, true, true, false}, // past 100's last part: 101 part 0 exists
		{101, 0, true, true, false},
		{101, 1, true, false, false},
		{102, 0, true, false, false},
		{102, 0, false, false, false},
		{103, 0, true, false, true}, // more than two past the last complete (100)
		{101, cfg.maxParts, true, false, true},
	}
	for _, tc := range cases {
		w.mu.Lock()
		sat, far := w.satisfiedLocked(tc.msn, tc.part, tc.hasPart), w.tooFarLocked(tc.msn, tc.part, tc.hasPart)
		w.mu.Unlock()
		if sat != tc.satisfied || far != tc.tooFar {
			t.Errorf("msn %d part %d (%v): satisfied %v too far %v, want %v %v", tc.msn, tc.part, tc.hasPart, sat, far, tc.satisfied, tc.tooFar)
		}
	}
}

// TestWindowDiscontinuities: discontinuity numbers stay put as segments
// leave the window, and a delta update never skips past a discontinuity.
func TestWindowDiscontinuities(t *testing.T) {
	cfg := testConfig(t, Options{})
	w := newWindow(cfg, 0, 3)
	var c hlscheck.Checker
	r1, r2 := &rendition{token: "aaaaaaaa", init: []byte{1}}, &rendition{token: "bbbbbbbb", init: []byte{2}}
	cur := &segment{r: r1}
	w.open(cur)
	for i := range 30 {
		r := r1
		disc := false
		if i >= 12 {
			r = r2
			disc = i == 12
		}
		for range 3 {
			w.addPart(cur, &part{data: []byte{1}, dur: 200 * time.Millisecond, independent: true}, nil)
		}
		next := &segment{r: r, disc: disc}
		w.addPart(cur, &part{data: []byte{1}, dur: 200 * time.Millisecond}, next)
		cur = next
		w.mu.Lock()
		full, skip := w.playlistLocked(false).body, w.playlistLocked(true).body
		w.mu.Unlock()
		for _, b := range [][]byte{full, skip} {
			if err := c.Check(b); err != nil {
				t.Fatalf("after segment %d: %v\n%s", i, err, b)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.discSeq != 4 {
		t.Errorf("discontinuity sequence %d after the discontinuity left the window, want 4", w.discSeq)
	}
}

func TestParseName(t *testing.T) {
	cases := []struct {
		in   string
		want name
		ok   bool
	}{
		{"index.m3u8", name{kind: kindMultivariant}, true},
		{"stream.m3u8", name{kind: kindMediaPlaylist}, true},
		{"abcd1234_init.mp4", name{kind: kindInit, token: "abcd1234"}, true},
		{"abcd1234_17.m4s", name{kind: kindSegment, token: "abcd1234", msn: 17}, true},
		{"abcd1234_17.ts", name{kind: kindSegment, token: "abcd1234", msn: 17, ts: true}, true},
		{"abcd1234_17_3.m4s", name{kind: kindPart, token: "abcd1234", msn: 17, part: 3}, true},
		{"abcd1234_17_3.ts", name{}, false},
		{"ABCD1234_17.m4s", name{}, false},
		{"abcd1234_+17.m4s", name{}, false},
		{"abcd1234_17_-1.m4s", name{}, false},
		{"abcd1234_99999999999999999999999.m4s", name{}, false},
		{"abcd1234_init.m4s", name{}, false},
		{"abc_17.m4s", name{}, false},
		{"other.m3u8", name{}, false},
		{"abcd1234_17.m4s.m4s", name{}, false},
	}
	for _, tc := range cases {
		got, ok := parseName(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseName(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAppendSecs(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.000", 250 * time.Millisecond: "0.250", time.Second + 5*time.Millisecond: "1.005",
		33366666: "0.033", 6 * time.Second: "6.000",
	} {
		if got := string(appendSecs(nil, d)); got != want {
			t.Errorf("appendSecs(%v) = %s, want %s", d, got, want)
		}
	}
	_ = fmt.Sprint
}

// BenchmarkPackager packages 10 s of 720p30 3 Mbit/s H.264 with AAC per
// iteration, as a broadcast's consumer does, rendering each playlist version
// once: the segmenter's CPU per stream, apart from ingest and serving.
func BenchmarkPackager(b *testing.B) {
	clip := testmedia.Make(b, testmedia.Spec{Seconds: 10, Video: true, Audio: true, Size: "1280x720", Bitrate: "3M"})
	cfg := testConfig(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		var m metrics
		w := newWindow(cfg, 1000, 0)
		bc := &ingest.Broadcast{ID: "b1", Channel: "ch", Tracks: clip.Tracks, Started: time.Now()}
		p, err := newPackager(cfg, &m, w, bc, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		rendered := uint64(0)
		for _, au := range clip.Units {
			au.Received = time.Now()
			if au.Kind == ingest.KindVideo {
				err = p.writeVideo(au)
			} else {
				err = p.writeAudio(au)
			}
			if err != nil {
				b.Fatal(err)
			}
			w.mu.Lock()
			if w.version != rendered && w.hasPartsLocked() {
				rendered = w.version
				w.playlistLocked(false)
			}
			w.mu.Unlock()
		}
		p.finish(true)
		w.close()
	}
}
