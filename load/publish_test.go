package load

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// units records what ingest delivered per channel.
type units struct {
	mu    sync.Mutex
	video map[string][]ingest.AccessUnit
	audio map[string]int
	ended map[string]ingest.EndReason
}

func (u *units) Consume(ctx context.Context, b *ingest.Broadcast, f *ingest.Feed) {
	for {
		au, err := f.Next(ctx)
		u.mu.Lock()
		if err != nil {
			u.ended[b.Channel] = ingest.EndReasonOf(err)
			u.mu.Unlock()
			return
		}
		if au.Kind == ingest.KindVideo {
			u.video[b.Channel] = append(u.video[b.Channel], ingest.AccessUnit{DTS: au.DTS, PTS: au.PTS, Key: au.Key})
		} else {
			u.audio[b.Channel]++
		}
		u.mu.Unlock()
	}
}

// startIngest runs onair's RTMP ingest in-process with channels c0..c{n-1}
// (keys k0..) and returns its address.
func startIngest(t *testing.T, n int, mod func(*ingest.Options)) (*ingest.Hub, *units, string) {
	t.Helper()
	opts := ingest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := range n {
		opts.Channels = append(opts.Channels, ingest.ChannelConfig{Name: fmt.Sprintf("c%d", i), Keys: []string{fmt.Sprintf("k%d", i)}})
	}
	if mod != nil {
		mod(&opts)
	}
	hub, err := ingest.NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	u := &units{video: map[string][]ingest.AccessUnit{}, audio: map[string]int{}, ended: map[string]ingest.EndReason{}}
	hub.AddConsumer(u)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hub.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := hub.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return hub, u, ln.Addr().String()
}

func clipMedia(t *testing.T) *Media {
	t.Helper()
	tags, err := ReadFLVFile(testClip(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := PrepareMedia(tags, DefaultChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func streams(keys ...string) []Stream {
	var out []Stream
	for _, k := range keys {
		out = append(out, Stream{Name: k, Channel: "c" + strings.TrimPrefix(k, "k")})
	}
	return out
}

// TestPublishToIngest replays a 2 s clip for 5 s from three publishers to
// onair's ingest: every publish is confirmed, the frames arrive at the
// clip's rate with timestamps that keep rising across loops, and the end
// of the run unpublishes cleanly.
func TestPublishToIngest(t *testing.T) {
	media := clipMedia(t)
	_, got, addr := startIngest(t, 3, nil)
	target, _ := ParseTarget("rtmp://" + addr + "/live")
	const dur = 5 * time.Second
	run, err := StartPublish(context.Background(), PublishOptions{
		Target: target, Media: media, Streams: streams("k0", "k1", "k2"), Duration: dur, Ramp: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := run.Wait()
	s := res.Summary()
	if s.Confirmed != 3 || s.Refused+s.Failed+s.Dropped != 0 {
		t.Fatalf("summary %+v; publishers %+v", s, res.Publishers)
	}
	for _, p := range res.Publishers {
		if p.State != "done" || p.Confirm <= 0 || p.Confirm > p.Published {
			t.Errorf("publisher %d: %+v", p.Index, p)
		}
		// Bytes written: the media's rate over the time live, give or take
		// the first keyframe burst and the chunk headers.
		want := media.Bitrate() / 8 * p.Published.Seconds()
		if float64(p.Sent) < 0.7*want || float64(p.Sent) > 1.2*want+float64(len(media.loop[0].body)) {
			t.Errorf("publisher %d sent %d bytes in %v, want about %.0f", p.Index, p.Sent, p.Published, want)
		}
	}
	waitFor(t, "every broadcast ended", func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.ended) == 3
	})
	got.mu.Lock()
	defer got.mu.Unlock()
	for ch, reason := range got.ended {
		if reason != ingest.EndStopped {
			t.Errorf("%s ended with %q, want a clean stop (deleteStream)", ch, reason)
		}
		v := got.video[ch]
		// At most what plays in the run (no faster than real time) plus one
		// tick; at least half of it even on a busy machine.
		if max := int(dur.Seconds()*30) + 2; len(v) > max || len(v) < max/2 {
			t.Errorf("%s: %d video frames in %v, want at most %d and at least half of that", ch, len(v), dur, max)
		}
		if got.audio[ch] < len(v) { // 47 AAC frames a second against 30 video
			t.Errorf("%s: %d audio frames for %d video frames", ch, got.audio[ch], len(v))
		}
		keys := 0
		for i, au := range v {
			if au.Key {
				keys++
			}
			if i > 0 && au.DTS <= v[i-1].DTS {
				t.Fatalf("%s: DTS %v after %v at frame %d: timestamps must keep rising across loops", ch, au.DTS, v[i-1].DTS, i)
			}
		}
		if last := v[len(v)-1].DTS; len(v) > 60 && last < 2*time.Second {
			t.Errorf("%s: %d frames but the last DTS is %v: the loop did not continue the timeline", ch, len(v), last)
		}
		if keys < len(v)/30 {
			t.Errorf("%s: %d keyframes in %d frames, want one a second", ch, keys, len(v))
		}
	}
}

// TestPublishRefusedAndDropped checks what each kind of failure reports.
func TestPublishRefusedAndDropped(t *testing.T) {
	media := clipMedia(t)
	hub, _, addr := startIngest(t, 2, nil)
	target, _ := ParseTarget("rtmp://" + addr + "/live")
	ctx := context.Background()
	first, err := StartPublish(ctx, PublishOptions{Target: target, Media: media, Streams: streams("k0"), Duration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Wait()
	defer first.Stop()
	waitFor(t, "the first publisher confirmed", func() bool { return first.Progress().Live == 1 })
	// k0 again: refused, the channel is live. k1: taken down once live.
	// "nokey" is no key at all.
	run, err := StartPublish(ctx, PublishOptions{Target: target, Media: media, Streams: streams("k0", "k1", "nokey"),
		Duration: 20 * time.Second, Ramp: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c1 live", func() bool { st, _ := hub.Channel("c1"); return st.Live })
	if err := hub.TakeDown("c1", "test takedown", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three outcomes", func() bool { p := run.Progress(); return p.Refused == 2 && p.Dropped == 1 })
	run.Stop()
	res := run.Wait()
	check := func(i int, state, code, desc, errText string) {
		t.Helper()
		p := res.Publishers[i]
		var st Status
		if p.Status != nil {
			st = *p.Status
		}
		if p.State != state || st.Code != code || !strings.Contains(st.Description, desc) || !strings.Contains(p.Error, errText) {
			t.Errorf("publisher %d: state %q, status %+v, error %q; want %q, %q (%q), %q", i, p.State, st, p.Error, state, code, desc, errText)
		}
	}
	check(0, "refused", "NetStream.Publish.BadName", "already being published", "")
	check(1, "dropped", "", "", "connection")
	check(2, "refused", "NetStream.Publish.Unauthorized", "invalid stream key", "")
	if s := res.Summary(); s.Confirmed != 1 || s.Refused != 2 || s.Dropped != 1 {
		t.Errorf("summary %+v", s)
	}
}

// TestPublishConnectionLimit: a server that closes the connection before
// confirming counts as a failure with its reason.
func TestPublishConnectionLimit(t *testing.T) {
	media := clipMedia(t)
	_, _, addr := startIngest(t, 2, func(o *ingest.Options) { o.ConnsPerIP = 1 })
	target, _ := ParseTarget("rtmp://" + addr + "/live")
	run, err := StartPublish(context.Background(), PublishOptions{Target: target, Media: media, Streams: streams("k0", "k1"),
		Duration: 20 * time.Second, Ramp: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one live, one failed", func() bool { p := run.Progress(); return p.Live == 1 && p.Failed == 1 })
	run.Stop()
	res := run.Wait()
	if p := res.Publishers[1]; p.State != "failed" || p.Confirm != 0 ||
		!(strings.Contains(p.Error, "closed by the server") || strings.Contains(p.Error, "reset by the server")) {
		t.Errorf("second publisher: %+v", p)
	}
	var buf strings.Builder
	res.WriteText(&buf)
	if !strings.Contains(buf.String(), "confirmed 1, refused 0, failed 1") || !strings.Contains(buf.String(), "(publishers 1)") {
		t.Errorf("summary text:\n%s", buf.String())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
