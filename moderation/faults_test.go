package moderation

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// policySlack is how much later than FailureAfter the failure policy may
// apply in these tests: it applies at the first sample after FailureAfter,
// a frame at a random point of each interval, after the decode or screen
// limit and the retry delay (more on a loaded machine: subtests run in
// parallel under the race detector).
const policySlack = 3 * time.Second

// TestDecoderFaults: an ffmpeg that hangs, one that dies at once, one that
// writes garbage, and none at all. Screening fails and the failure policy
// applies on time, the media path never waits, few processes are started,
// and none is left running after Close.
func TestDecoderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=2", ingest.CodecH264, 30, 15)
	if n := len(children(t, "")); n != 0 {
		t.Skipf("%d child processes already running", n)
	}
	ffmpegs := []struct{ name, path string }{
		{"hangs", fakeFFmpeg(t, "exec sleep 600")},
		{"exits", fakeFFmpeg(t, "exit 1")},
		{"garbage", fakeFFmpeg(t, "head -c 200000 /dev/urandom; exec sleep 600")},
		{"missing", "/nonexistent/ffmpeg"},
	}
	const failureAfter = 2 * time.Second
	t.Run("group", func(t *testing.T) {
		for _, ff := range ffmpegs {
			for _, policy := range []FailurePolicy{FailOpen, FailClosed} {
				t.Run(ff.name+"/"+string(policy), func(t *testing.T) {
					t.Parallel()
					h := newHub()
					opts := DefaultOptions()
					opts.Interval = 500 * time.Millisecond
					opts.FailureAfter = failureAfter
					opts.FailurePolicy = policy
					opts.DecodeTimeout = time.Second
					opts.Decoders = 1
					opts.FFmpegPath = ff.path
					opts.Screeners = []Screener{allowAll{}}
					opts.Enforcer = h
					opts.Logger = quietLogger()
					m := newModerator(t, opts)
					var clearedAt time.Duration
					r := play(t, m, h, c, "ch", 5*time.Second, func(el time.Duration) {
						if clearedAt == 0 && m.Cleared("ch") {
							clearedAt = el
						}
					})
					m.Close()
					if r.feed.Dropped() > 0 {
						t.Errorf("feed dropped %d units: Consume fell behind", r.feed.Dropped())
					}
					if r.consumed > time.Second {
						t.Errorf("Consume returned %v after the feed ended", r.consumed)
					}
					calls := h.takedowns()
					switch policy {
					case FailOpen:
						if len(calls) != 0 {
							t.Errorf("policy open took the broadcast down: %+v", calls)
						}
						if clearedAt < failureAfter || clearedAt > failureAfter+policySlack {
							t.Errorf("cleared at %v, want soon after %v", clearedAt, failureAfter)
						}
					case FailClosed:
						if len(calls) != 1 || calls[0].reason != ReasonUnavailable {
							t.Fatalf("takedowns %+v, want one with %q", calls, ReasonUnavailable)
						}
						if after := calls[0].at.Sub(r.received[0]); after < failureAfter || after > failureAfter+policySlack {
							t.Errorf("taken down %v after the start, want soon after %v", after, failureAfter)
						}
					}
					starts, _ := strconv.Atoi(metricValue(m, "onair_moderation_decoder_starts_total"))
					if starts > 6 {
						t.Errorf("%d decoder processes started, want at most 6", starts)
					}
					if got := metricValue(m, "onair_moderation_decoder_processes"); got != "0" {
						t.Errorf("%s decoder processes running after Close", got)
					}
					t.Logf("cleared at %v, takedowns %d, %d processes started, Consume returned %v after feed end",
						clearedAt.Round(time.Millisecond), len(calls), starts, r.consumed.Round(time.Millisecond))
				})
			}
		}
		t.Run("thumbnail/hangs", func(t *testing.T) {
			t.Parallel()
			h := newHub()
			opts := DefaultOptions()
			opts.FFmpegPath = ffmpegs[0].path
			opts.DecodeTimeout = time.Second
			opts.Logger = quietLogger()
			m := newModerator(t, opts)
			var took time.Duration
			var status int
			asked := false
			answered := make(chan struct{})
			r := play(t, m, h, c, "th", 4*time.Second, func(el time.Duration) {
				if asked || el < 500*time.Millisecond {
					return
				}
				asked = true
				go func() { // not in the feeder's way
					defer close(answered)
					rec := httptest.NewRecorder()
					req := httptest.NewRequest("GET", "/api/v1/channels/th/thumbnail.jpg", nil)
					req.SetPathValue("name", "th")
					t0 := time.Now()
					m.ThumbnailHandler().ServeHTTP(rec, req)
					took, status = time.Since(t0), rec.Code
				}()
			})
			<-answered
			t.Logf("thumbnail with a hanging decoder: %d after %v", status, took.Round(time.Millisecond))
			if status != 404 || took > thumbWait+500*time.Millisecond {
				t.Errorf("thumbnail with a hanging decoder: %d after %v, want 404 within %v", status, took, thumbWait)
			}
			if r.feed.Dropped() > 0 {
				t.Errorf("feed dropped %d units", r.feed.Dropped())
			}
		})
	})
	time.Sleep(100 * time.Millisecond)
	if pids := children(t, ""); len(pids) != 0 {
		t.Errorf("child processes left after every Moderator closed: %v", pids)
	}
}

// panicky is a screener that panics on every frame.
type panicky struct{}

func (panicky) Name() string { return "panicky" }
func (panicky) Screen(context.Context, *Frame) (Verdict, error) {
	panic("screener bug")
}

// blockAll is a screener that blocks every frame.
type blockAll struct{}

func (blockAll) Name() string { return "block-all" }
func (blockAll) Screen(context.Context, *Frame) (Verdict, error) {
	return Verdict{Action: Block, Reason: "test"}, nil
}

// panickyHub is an Enforcer that panics.
type panickyHub struct{ *hub }

func (h panickyHub) TakeDown(channel, reason string, ban time.Duration) error {
	h.hub.TakeDown(channel, reason, ban)
	panic("enforcer bug")
}

// TestPanicsRecovered: a panic in screening counts as a screening failure
// (so the failure policy applies), a panic while taking a broadcast down is
// contained; both are logged and counted, and the media path goes on.
func TestPanicsRecovered(t *testing.T) {
	c := encodeClip(t, "testsrc2=s=320x180:r=30:d=2", ingest.CodecH264, 30, 15)
	cases := []struct {
		name     string
		screener Screener
		panicky  bool // the Enforcer panics
		where    string
	}{
		{"screener", panicky{}, false, "screening"},
		{"enforcer", blockAll{}, true, "takedown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub()
			opts := DefaultOptions()
			opts.Interval = 500 * time.Millisecond
			opts.FailureAfter = time.Second
			opts.FailurePolicy = FailClosed
			opts.Screeners = []Screener{tc.screener}
			opts.Enforcer = h
			if tc.panicky {
				opts.Enforcer = panickyHub{h}
			}
			opts.Logger = quietLogger()
			m := newModerator(t, opts)
			r := play(t, m, h, c, "p", 4*time.Second, nil)
			m.Close()
			if n := len(h.takedowns()); n != 1 {
				t.Errorf("%d takedowns, want 1", n)
			}
			if got := metricValue(m, `onair_moderation_panics_total{where="`+tc.where+`"}`); got == "" || got == "0" {
				t.Errorf("panics in %s counted %q", tc.where, got)
			}
			if r.feed.Dropped() > 0 {
				t.Errorf("feed dropped %d units", r.feed.Dropped())
			}
		})
	}
}

// TestUndecodableSparesPool: frames of a codec the decoder does not take,
// or of a size it must not be given (none, or absurd: the SPS says what a
// decoder allocates), fail at once and never reach the shared workers
// (whose restart backoff would otherwise fail other broadcasts' frames).
func TestUndecodableSparesPool(t *testing.T) {
	for _, tc := range []struct {
		name  string
		track ingest.VideoTrack
	}{
		{"vp9", ingest.VideoTrack{Codec: ingest.Codec("vp9"), Width: 1280, Height: 720}},
		{"absurd size", ingest.VideoTrack{Codec: ingest.CodecH264, Width: 65535, Height: 65535}},
		{"unknown size", ingest.VideoTrack{Codec: ingest.CodecH264}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.Screeners = []Screener{allowAll{}}
			opts.Logger = quietLogger()
			m := newModerator(t, opts)
			b := &ingest.Broadcast{ID: "b-x", Channel: "x", Tracks: ingest.Tracks{Video: &tc.track}}
			feed := ingest.NewFeed(8, b.Tracks)
			done := make(chan struct{})
			go func() {
				defer close(done)
				m.Consume(context.Background(), b, feed)
			}()
			feed.Push(ingest.AccessUnit{Kind: ingest.KindVideo, Key: true, NALUs: [][]byte{{0x65, 0x88}}, Received: time.Now()})
			deadline := time.Now().Add(5 * time.Second)
			for metricValue(m, `onair_moderation_failures_total{stage="decoder"}`) == "" && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			feed.End(ingest.EndStopped, "")
			<-done
			if got := metricValue(m, `onair_moderation_failures_total{stage="decoder"}`); got != "1" {
				t.Errorf("decoder failures %q, want 1", got)
			}
			if got := metricValue(m, "onair_moderation_decoder_starts_total"); got != "0" {
				t.Errorf("%s decoder processes started", got)
			}
		})
	}
}
