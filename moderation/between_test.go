package moderation

import (
	"context"
	"image"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/testmedia"
)

// gopStream returns seconds of 30 fps H.264-like units in decode order with
// a keyframe every 30 frames and two B-frames between references (I0 P3 B1
// B2 P6 B4 B5 ...): the B-frames are shown before the P-frame decoded ahead
// of them and nothing refers to them.
func gopStream(seconds int) []ingest.AccessUnit {
	const fps = 30
	frame := time.Second / fps
	var out []ingest.AccessUnit
	unit := func(n int, dts int, nalu byte) ingest.AccessUnit {
		return ingest.AccessUnit{Kind: ingest.KindVideo, Key: nalu == 0x65, DTS: time.Duration(dts) * frame,
			PTS: time.Duration(n+1) * frame, NALUs: [][]byte{{nalu, 0x80}}}
	}
	dts := 0
	for g := 0; g < seconds; g++ {
		base := g * fps
		out = append(out, unit(base, dts, 0x65)) // IDR, nal_ref_idc 3
		dts++
		for p := 3; p < fps; p += 3 {
			out = append(out, unit(base+p, dts, 0x41)) // P, nal_ref_idc 2
			out = append(out, unit(base+p-2, dts+1, 0x01), unit(base+p-1, dts+2, 0x01))
			dts += 3
		}
		out = append(out, unit(base+fps-2, dts, 0x41), unit(base+fps-1, dts+1, 0x41))
		dts += 2
	}
	return out
}

func TestSamplerBetweenKeyframes(t *testing.T) {
	const interval = 2 * time.Second
	units := gopStream(60)
	s := NewModeSampler(interval, SampleAny, disposableH264)
	var samples []Sample
	for _, au := range units {
		if taken, _ := s.Observe(au); taken {
			smp, _ := s.TryNext()
			samples = append(samples, smp)
		}
	}
	if len(samples) < 29 || len(samples) > 32 {
		t.Fatalf("%d samples over 60 s at a 2 s interval, want about 31", len(samples))
	}
	if f := samples[0]; len(f.Frames) != 1 || !f.Frames[0].Key || f.Frames[0].DTS != 0 {
		t.Errorf("first sample %+v, want the first keyframe alone", f)
	}
	if d := samples[1].Target().DTS; d >= firstWindow {
		t.Errorf("second sample at %v, want within the first %v", d, firstWindow)
	}
	offsets := map[time.Duration]bool{}
	between := 0
	for i, smp := range samples {
		key := smp.Frames[0]
		if !key.Key {
			t.Fatalf("sample %d starts with a non-keyframe", i)
		}
		var maxPTS time.Duration = -1
		for j, au := range smp.Frames {
			if j > 0 && au.Key {
				t.Fatalf("sample %d holds a second keyframe", i)
			}
			shown := au.PTS > maxPTS
			if shown {
				maxPTS = au.PTS
			} else if disposableH264(au) {
				t.Errorf("sample %d carries a frame nothing refers to (PTS %v)", i, au.PTS)
			}
			if j == len(smp.Frames)-1 && !shown {
				t.Errorf("sample %d ends with a frame the decoder drops", i)
			}
		}
		if !smp.Target().Key {
			between++
		}
		offsets[smp.Target().PTS-key.PTS] = true
		if i > 0 {
			if gap := smp.Target().DTS - samples[i-1].Target().DTS; gap > 2*interval+interval/10 {
				t.Errorf("samples %d and %d are %v apart", i-1, i, gap)
			}
		}
	}
	if between < len(samples)*2/3 {
		t.Errorf("%d of %d samples screen a frame between keyframes, want most", between, len(samples))
	}
	if len(offsets) < 6 {
		t.Errorf("%d distinct offsets from the keyframe over %d samples: predictable", len(offsets), len(samples))
	}
}

// TestSamplerKeepsSamples: a sample taken out is still being decoded while
// the media path goes on; the frames that come after it never write over it.
func TestSamplerKeepsSamples(t *testing.T) {
	s := NewModeSampler(time.Second, SampleAny, disposableH264)
	type taken struct {
		smp    Sample
		frames []ingest.AccessUnit // a copy made when it was taken
	}
	var all []taken
	// Two seconds of keyframes only (an all-intra start), then GOPs.
	var units []ingest.AccessUnit
	for i := range 60 {
		d := time.Duration(i) * time.Second / 30
		units = append(units, ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, DTS: d, PTS: d, NALUs: [][]byte{{0x65}}})
	}
	for _, au := range gopStream(20) {
		au.DTS += 2 * time.Second
		au.PTS += 2 * time.Second
		units = append(units, au)
	}
	for _, au := range units {
		if ok, _ := s.Observe(au); ok {
			smp, _ := s.TryNext()
			all = append(all, taken{smp, append([]ingest.AccessUnit(nil), smp.Frames...)})
		}
	}
	for i, tk := range all {
		for j := range tk.frames {
			if tk.smp.Frames[j].DTS != tk.frames[j].DTS || tk.smp.Frames[j].Key != tk.frames[j].Key {
				t.Fatalf("sample %d, frame %d changed after it was taken: DTS %v, was %v", i, j, tk.smp.Frames[j].DTS, tk.frames[j].DTS)
			}
		}
	}
}

func TestSamplerBoundsPrefix(t *testing.T) {
	// One keyframe, then 40 s of P-frames: samples stop growing at
	// maxPrefixFrames, and the sampler says frames went unscreened.
	s := NewModeSampler(time.Second, SampleAny, disposableH264)
	frame := time.Second / 30
	longest := 0
	for i := 0; i < 1200; i++ {
		nalu := byte(0x41)
		if i == 0 {
			nalu = 0x65
		}
		d := time.Duration(i) * frame
		if taken, _ := s.Observe(ingest.AccessUnit{Kind: ingest.KindVideo, Key: i == 0, DTS: d, PTS: d, NALUs: [][]byte{{nalu}}}); taken {
			smp, _ := s.TryNext()
			longest = max(longest, len(smp.Frames))
		}
	}
	if longest > maxPrefixFrames || longest < maxPrefixFrames/2 {
		t.Errorf("longest sample %d frames, want at most %d", longest, maxPrefixFrames)
	}
	if !s.GOPTooLong() {
		t.Error("GOPTooLong is false after 40 s without a keyframe")
	}
	if !strings.Contains(ReasonLongGOP, strconv.Itoa(maxPrefixFrames)+" frames") {
		t.Errorf("ReasonLongGOP %q does not name the limit, %d frames", ReasonLongGOP, maxPrefixFrames)
	}
}

// TestSPSStatesNoReordering: whatever an H.264 SPS says of reordering (a
// bitstream restriction, none, or no VUI at all), the decoder's copy
// states none explicitly, and the rest of it decodes the same.
func TestSPSStatesNoReordering(t *testing.T) {
	c := testmedia.Make(t, testmedia.Spec{Video: true, Seconds: 1})
	orig := c.Tracks.Video.SPS
	var want h264.SPS
	if err := want.Unmarshal(orig); err != nil {
		t.Fatal(err)
	}
	if want.VUI == nil || want.VUI.BitstreamRestriction == nil || want.VUI.BitstreamRestriction.MaxNumReorderFrames == 0 {
		t.Fatalf("x264's SPS should state reordering: %+v", want.VUI)
	}
	cases := []struct {
		name string
		sps  []byte
	}{
		{"with restriction", orig},
		{"no restriction", spsCut(t, orig, true)},
		{"no VUI", spsCut(t, orig, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, explicit, err := withoutReordering(ingest.CodecH264, tc.sps)
			if err != nil || !explicit {
				t.Fatalf("withoutReordering: explicit %v, %v", explicit, err)
			}
			var got h264.SPS
			if err := got.Unmarshal(out); err != nil {
				t.Fatalf("rewritten SPS does not parse: %v", err)
			}
			br := got.VUI.BitstreamRestriction
			if br == nil || br.MaxNumReorderFrames != 0 || br.MaxDecFrameBuffering < got.MaxNumRefFrames {
				t.Fatalf("restriction %+v (max_num_ref_frames %d)", br, got.MaxNumRefFrames)
			}
			if got.Width() != want.Width() || got.Height() != want.Height() || got.ProfileIdc != want.ProfileIdc ||
				got.MaxNumRefFrames != want.MaxNumRefFrames || got.FrameMbsOnlyFlag != want.FrameMbsOnlyFlag {
				t.Errorf("rewritten SPS changed: %+v", got)
			}
		})
	}
}

// spsCut returns sps with its VUI's bitstream restriction removed (keepVUI)
// or without any VUI.
func spsCut(t *testing.T, sps []byte, keepVUI bool) []byte {
	t.Helper()
	rbsp := unescapeRBSP(sps[1:])
	l, err := parseH264Layout(&bitReader{b: rbsp})
	if err != nil || l.restrictionFlag < 0 {
		t.Fatalf("layout %+v, %v", l, err)
	}
	w := &bitWriter{}
	if keepVUI {
		w.copyBits(rbsp, 0, l.restrictionFlag)
	} else {
		w.copyBits(rbsp, 0, l.vuiFlag)
	}
	w.bit(0) // the flag, off
	w.bit(1) // rbsp_stop_one_bit
	for w.n%8 != 0 {
		w.bit(0)
	}
	return append([]byte{sps[0]}, escapeRBSP(w.b)...)
}

// TestDecodeBetweenKeyframes: a stream that shows black on exactly its
// keyframes and colour bars between them. Samples decode to the black
// keyframe and to the bars, the bars match their own perceptual hash, and
// the broadcast is flagged for keyframes that differ from the rest.
func TestDecodeBetweenKeyframes(t *testing.T) {
	c := testmedia.Make(t, testmedia.Spec{Video: true, Seconds: 8, Size: "640x360", Pattern: "smptebars",
		ExtraArgs: []string{"-vf", "drawbox=c=black:t=fill:enable='not(mod(n\\,30))'"}})
	bars := testmedia.Make(t, testmedia.Spec{Video: true, Seconds: 1, Size: "640x360", Pattern: "smptebars"})
	track, explicit, err := decoderTrack(c.Tracks.Video)
	if err != nil || !explicit {
		t.Fatalf("decoderTrack: explicit %v, %v", explicit, err)
	}
	d, err := StartDecoder(DecoderOptions{Codec: ingest.CodecH264, Width: 640, Height: 360})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	decode := func(smp Sample) (key, last image.Image) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		k, l, err := d.DecodeSample(ctx, annexB(track, smp))
		if err != nil {
			t.Fatalf("sample at %v (%d frames): %v", smp.Target().PTS, len(smp.Frames), err)
		}
		ki, err := (&Frame{JPEG: k}).Image()
		if err != nil {
			t.Fatal(err)
		}
		li, err := (&Frame{JPEG: l}).Image()
		if err != nil {
			t.Fatal(err)
		}
		return ki, li
	}
	var barsHash uint64
	for _, au := range bars.Units {
		if au.Kind == ingest.KindVideo && au.Key {
			_, img := decode(Sample{Frames: []ingest.AccessUnit{au}})
			barsHash = HashImage(img)
			break
		}
	}
	s := NewModeSampler(time.Second, SampleAny, disposableH264)
	var tr splitTracker
	between, flagged := 0, false
	for _, au := range c.Units {
		if taken, _ := s.Observe(au); !taken {
			continue
		}
		smp, _ := s.TryNext()
		key, last := decode(smp)
		if l := meanLuma(key); l > 20 {
			t.Errorf("sample at %v: keyframe image luma %.0f, want black", smp.Target().PTS, l)
		}
		if smp.Target().Key {
			continue
		}
		between++
		if _, _, flag := tr.observe(HashImage(key), HashImage(last)); flag {
			flagged = true
		}
		if dist := Distance(HashImage(last), barsHash); dist > 10 {
			t.Errorf("sample at %v (%d frames in): image %d bits from the bars (luma %.0f)",
				smp.Target().PTS, len(smp.Frames), dist, meanLuma(last))
		}
	}
	if between < 4 {
		t.Errorf("%d samples between keyframes in 8 s at a 1 s interval", between)
	}
	if !flagged {
		t.Error("black keyframes between colour bars were not flagged as a split")
	}
}

func meanLuma(img image.Image) float64 {
	b := img.Bounds()
	sum, n := 0.0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			sum += luma(img, x, y)
			n++
		}
	}
	return sum / float64(n)
}

// TestNoFalseSplits screens five minutes of each of several sources the way
// a broadcast is screened (a sample at a random point of every 2 s) and
// counts the samples whose keyframe and screened frame differ sharply. None
// of these sources may be flagged; "cuts" (a hard cut every 3 s that the
// encoder is not allowed to mark with a keyframe) is the worst case an
// ordinary stream can give, and its split rate is logged.
func TestNoFalseSplits(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes five minutes of samples per source")
	}
	const interval = 2 * time.Second
	const media = 5 * time.Minute
	sources := []struct {
		name string
		spec testmedia.Spec
	}{
		{"testsrc2", testmedia.Spec{Pattern: "testsrc2"}},
		{"mandelbrot", testmedia.Spec{Pattern: "mandelbrot"}},
		{"life", testmedia.Spec{Pattern: "life"}},
		{"smptebars", testmedia.Spec{Pattern: "smptebars"}},
		{"cuts", testmedia.Spec{Pattern: "testsrc2",
			ExtraArgs: []string{"-vf", "drawbox=x=0:y=0:w=iw*3/4:h=ih:c=black:t=fill:enable='gte(mod(t\\,6)\\,3)'"}}},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			spec := src.spec
			spec.Video, spec.Seconds, spec.Size = true, 10, "640x360"
			c := testmedia.Make(t, spec)
			track, _, err := decoderTrack(c.Tracks.Video)
			if err != nil {
				t.Fatal(err)
			}
			d, err := StartDecoder(DecoderOptions{Codec: ingest.CodecH264, Width: 640, Height: 360})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var video []ingest.AccessUnit
			for _, au := range c.Units {
				if au.Kind == ingest.KindVideo {
					video = append(video, au)
				}
			}
			clipLen := time.Duration(spec.Seconds) * time.Second
			s := NewModeSampler(interval, SampleAny, disposableH264)
			var tr splitTracker
			samples, flags := 0, 0
			maxSplits := 0
			for loop := 0; time.Duration(loop)*clipLen < media; loop++ {
				for _, au := range video {
					au.DTS += time.Duration(loop) * clipLen
					au.PTS += time.Duration(loop) * clipLen
					if taken, _ := s.Observe(au); !taken {
						continue
					}
					smp, _ := s.TryNext()
					if smp.Target().Key {
						continue
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					k, l, err := d.DecodeSample(ctx, annexB(track, smp))
					cancel()
					if err != nil {
						t.Fatalf("sample at %v: %v", smp.Target().PTS, err)
					}
					ki, _ := (&Frame{JPEG: k}).Image()
					li, _ := (&Frame{JPEG: l}).Image()
					_, n, flag := tr.observe(HashImage(ki), HashImage(li))
					samples++
					maxSplits = max(maxSplits, n)
					if flag {
						flags++
					}
				}
			}
			t.Logf("%s: %d samples between keyframes, at most %d splits in any %d, %d flags", src.name, samples, maxSplits, splitWindow, flags)
			if flags > 0 {
				t.Errorf("%s: flagged %d times in 5 minutes", src.name, flags)
			}
		})
	}
}
