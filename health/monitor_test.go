package health

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// testSPS is an H.264 High profile SPS (320×240, level 1.3).
var testSPS = []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60}

// aacLC48kStereo is an AudioSpecificConfig: AAC-LC, 48 kHz, 2 channels.
var aacLC48kStereo = []byte{0x11, 0x90}

// synth describes a synthetic publisher.
type synth struct {
	seconds float64
	fps     float64
	gop     int                 // frames per keyframe interval
	noAudio bool                // no audio track at all
	silent  bool                // an audio track that sends nothing
	frame   func(t float64) int // bytes of a non-key frame at media time t; default 8 KB
	drop    func(i int) bool    // frames the encoder never sends
	jumpAt  float64             // a forward timestamp jump of jump at this media time
	jump    time.Duration       //
	pauseAt float64             // arrivals pause for pause at this media time (a reconnect)
	pause   time.Duration       //
	speed   float64             // wall seconds per media second; default 1
	sps     []byte              // default testSPS
}

func (g synth) broadcast() *ingest.Broadcast {
	sps := g.sps
	if sps == nil {
		sps = testSPS
	}
	b := &ingest.Broadcast{ID: "b1", Channel: "main", Started: time.Unix(1_800_000_000, 0),
		Tracks: ingest.Tracks{Video: &ingest.VideoTrack{Codec: ingest.CodecH264, SPS: sps, PPS: []byte{0x68}, Width: 320, Height: 240}}}
	if !g.noAudio {
		b.Tracks.Audio = &ingest.AudioTrack{Codec: ingest.CodecAAC, Config: aacLC48kStereo, SampleRate: 48000, Channels: 2}
	}
	return b
}

// units returns the access units in DTS order, audio interleaved, with arrival times.
func (g synth) units() []ingest.AccessUnit {
	if g.speed == 0 {
		g.speed = 1
	}
	if g.frame == nil {
		g.frame = func(float64) int { return 8000 }
	}
	t0 := time.Unix(1_800_000_000, 0)
	step := time.Duration(float64(time.Second) / g.fps)
	const audioStep = 1024 * time.Second / 48000
	var out []ingest.AccessUnit
	var audioAt time.Duration
	shift := time.Duration(0)
	for i := 0; ; i++ {
		dts := time.Duration(i) * step
		if dts.Seconds() >= g.seconds {
			break
		}
		if g.jump > 0 && shift == 0 && dts.Seconds() >= g.jumpAt {
			shift = g.jump
		}
		if g.pause > 0 && dts.Seconds() >= g.pauseAt {
			t0, g.pause = t0.Add(g.pause), 0
		}
		for !g.noAudio && !g.silent && audioAt <= dts {
			out = append(out, ingest.AccessUnit{Kind: ingest.KindAudio, DTS: audioAt + shift, PTS: audioAt + shift,
				Frame: make([]byte, 256), Received: t0.Add(time.Duration(float64(audioAt) * g.speed))})
			audioAt += audioStep
		}
		if g.drop != nil && g.drop(i) {
			continue
		}
		key := i%g.gop == 0
		size := g.frame(dts.Seconds())
		if key {
			size *= 4
		}
		out = append(out, ingest.AccessUnit{Kind: ingest.KindVideo, DTS: dts + shift, PTS: dts + shift, Key: key,
			NALUs: [][]byte{make([]byte, size)}, Received: t0.Add(time.Duration(float64(dts) * g.speed))})
	}
	return out
}

func (g synth) report(t *testing.T) Report {
	t.Helper()
	s := newStream(g.broadcast(), Options{}.withDefaults())
	units := g.units()
	for i := range units {
		s.add(&units[i])
	}
	return s.report()
}

func codes(r Report) []string {
	var out []string
	for _, w := range r.Warnings {
		out = append(out, w.Code)
	}
	slices.Sort(out)
	return out
}

// TestMonitorWarnings feeds synthetic publishers, one fault at a time, and
// checks that exactly the expected warnings come out; a good OBS-like stream gets none.
func TestMonitorWarnings(t *testing.T) {
	obs := synth{seconds: 20, fps: 30, gop: 30}
	with := func(f func(*synth)) synth { g := obs; f(&g); return g }
	cases := []struct {
		name  string
		g     synth
		codes []string
		check func(t *testing.T, r Report)
	}{
		{"good OBS-like stream", obs, nil, func(t *testing.T, r Report) {
			if v := r.Video; v.FPS != 30 || v.KeyframeInterval.Avg != 1 || v.KeyframeInterval.Max != 1 {
				t.Errorf("video %+v, want 30 fps, 1 s keyframe interval", *v)
			}
			if r.Video.Profile != "High" || r.Video.Level != "1.3" || r.Audio.Profile != "AAC-LC" {
				t.Errorf("profile %q level %q audio %q", r.Video.Profile, r.Video.Level, r.Audio.Profile)
			}
		}},
		{"good stream at 60 fps", with(func(g *synth) { g.fps, g.gop = 60, 60 }), nil, nil},
		{"4 s keyframe interval", with(func(g *synth) { g.gop = 120 }), []string{CodeKeyframeInterval}, func(t *testing.T, r Report) {
			if r.Video.KeyframeInterval.Max != 4 {
				t.Errorf("keyframe interval %+v, want max 4 s", r.Video.KeyframeInterval)
			}
			if msg := r.Warnings[0].Message; !strings.Contains(msg, "4.0 s") || !strings.Contains(msg, "Keyframe Interval to 1 s") {
				t.Errorf("message %q", msg)
			}
		}},
		{"no keyframes after the first", with(func(g *synth) { g.gop = 100000 }), []string{CodeKeyframeInterval}, nil},
		{"no audio track", with(func(g *synth) { g.noAudio = true }), []string{CodeNoAudio}, nil},
		{"silent audio track", with(func(g *synth) { g.silent = true }), []string{CodeNoAudio}, nil},
		{"15 fps", with(func(g *synth) { g.fps, g.gop = 15, 15 }), []string{CodeLowFrameRate}, func(t *testing.T, r Report) {
			if r.Video.FPS != 15 {
				t.Errorf("fps %v, want 15", r.Video.FPS)
			}
		}},
		{"VBR swings", with(func(g *synth) {
			g.seconds = 30
			g.frame = func(t float64) int { // 6 s of noise, 6 s of a still
				if int(t/6)%2 == 0 {
					return 30000
				}
				return 1500
			}
		}), []string{CodeBitrateSwings}, func(t *testing.T, r Report) {
			if b := r.Video.Bitrate; b.Max < 6*b.Min {
				t.Errorf("bitrate %+v, want a wide swing", b)
			}
		}},
		{"forward timestamp jump", with(func(g *synth) { g.jumpAt, g.jump = 12, 3*time.Second }), []string{CodeTimestampJumps}, func(t *testing.T, r Report) {
			if r.TimestampJumps != 1 || r.LargestJumpSeconds < 3 {
				t.Errorf("jumps %d largest %v", r.TimestampJumps, r.LargestJumpSeconds)
			}
		}},
		{"dropped frames", with(func(g *synth) { g.drop = func(i int) bool { return i%10 == 5 } }), []string{CodeDroppedFrames}, func(t *testing.T, r Report) {
			if r.DroppedFrames < 30 {
				t.Errorf("dropped %d", r.DroppedFrames)
			}
		}},
		{"slower than real time", with(func(g *synth) { g.speed = 1.25 }), []string{CodeLateMedia}, func(t *testing.T, r Report) {
			if r.LateSeconds < 3 {
				t.Errorf("late %v s", r.LateSeconds)
			}
		}},
		{"a publisher reconnecting is not late", with(func(g *synth) { g.pauseAt, g.pause = 10, 5*time.Second }), nil, nil},
		{"H.264 4:4:4 profile", with(func(g *synth) {
			g.sps = slices.Clone(testSPS)
			g.sps[1] = 244
		}), []string{CodeProfile}, nil},
		{"all bad settings at once", with(func(g *synth) {
			g.fps, g.gop, g.noAudio, g.seconds = 15, 60, true, 40
			g.frame = func(t float64) int {
				if int(t/8)%2 == 0 {
					return 60000
				}
				return 2000
			}
		}), []string{CodeBitrateSwings, CodeKeyframeInterval, CodeLowFrameRate, CodeNoAudio}, nil},
		{"too little media to judge", with(func(g *synth) { g.seconds, g.gop, g.noAudio, g.fps = 6, 60, true, 15 }), nil, func(t *testing.T, r Report) {
			if r.Judged {
				t.Errorf("judged after 6 s")
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.g.report(t)
			if got := codes(r); !slices.Equal(got, c.codes) {
				t.Errorf("warnings %v, want %v\n%+v\nvideo %+v", got, c.codes, r, r.Video)
			}
			for _, w := range r.Warnings {
				if !strings.Contains(w.Message, "Settings →") {
					t.Errorf("warning %s names no OBS setting: %q", w.Code, w.Message)
				}
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// TestMonitorSegmentDuration: the keyframe threshold follows hls-segment-duration.
func TestMonitorSegmentDuration(t *testing.T) {
	g := synth{seconds: 20, fps: 30, gop: 60}
	s := newStream(g.broadcast(), Options{SegmentDuration: 2 * time.Second}.withDefaults())
	for _, u := range g.units() {
		s.add(&u)
	}
	if r := s.report(); len(r.Warnings) != 0 {
		t.Errorf("2 s keyframes with 2 s segments: %v", r.Warnings)
	}
	if r := g.report(t); len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0].Message, "to 1 s") {
		t.Errorf("2 s keyframes with 1 s segments: %v", r.Warnings)
	}
}

// TestMonitorConsume runs the Monitor as the hub does, and checks the report
// while live, that each warning is logged once, and that the report goes with the broadcast.
func TestMonitorConsume(t *testing.T) {
	var logs bytes.Buffer
	m := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	g := synth{seconds: 30, fps: 15, gop: 60, noAudio: true}
	b := g.broadcast()
	feed := ingest.NewFeed(1<<16, b.Tracks)
	done := make(chan struct{})
	go func() { m.Consume(context.Background(), b, feed); close(done) }()
	for _, u := range g.units() {
		feed.Push(u)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, ok := m.Report("main")
		if ok && r.MediaSeconds >= 29 {
			if got := codes(r); !slices.Equal(got, []string{CodeKeyframeInterval, CodeLowFrameRate, CodeNoAudio}) {
				t.Errorf("warnings %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no full report: %+v %v", r, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := m.Report("other"); ok {
		t.Errorf("a report for a channel that is not live")
	}
	feed.End(ingest.EndStopped, "")
	<-done
	if _, ok := m.Report("main"); ok {
		t.Errorf("report still there after the broadcast ended")
	}
	for _, code := range []string{CodeKeyframeInterval, CodeLowFrameRate, CodeNoAudio} {
		if n := strings.Count(logs.String(), "code="+code); n != 1 {
			t.Errorf("%s logged %d times, want once:\n%s", code, n, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "broadcast=b1") {
		t.Errorf("log lines lack level or broadcast:\n%s", logs.String())
	}
}

// BenchmarkUnit is the per-access-unit cost on the media path, as Consume
// pays it (a 30 fps stream with 48 kHz AAC, warnings checked every second).
func BenchmarkUnit(b *testing.B) {
	g := synth{seconds: 120, fps: 30, gop: 30}
	units := g.units()
	m := New(Options{Logger: slog.New(slog.DiscardHandler)})
	s := newStream(g.broadcast(), m.opts)
	b.ReportAllocs()
	b.ResetTimer()
	var shift time.Duration
	for i := 0; i < b.N; i++ {
		k := i % len(units)
		if k == 0 && i > 0 {
			shift += 120 * time.Second
		}
		u := units[k]
		u.DTS += shift
		if s.add(&u) {
			m.logNew(s)
		}
	}
}
