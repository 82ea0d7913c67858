package moderation

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// consumeUnits queues n units (30 fps video with a keyframe a second, and
// 47 AAC frames a second) on a feed, ends it, and lets m consume them all.
func consumeUnits(m *Moderator, n int) {
	track := &ingest.VideoTrack{Codec: ingest.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}}
	b := &ingest.Broadcast{ID: "b", Channel: "alloc", Tracks: ingest.Tracks{Video: track}}
	feed := ingest.NewFeed(n, b.Tracks)
	nalu := [][]byte{{0x65, 0x88}}
	for i := 0; i < n; i++ {
		d := time.Duration(i) * 13 * time.Millisecond
		au := ingest.AccessUnit{Kind: ingest.KindAudio, DTS: d, PTS: d, Frame: nalu[0]}
		if i%8 < 5 { // 5 video units to 3 audio ones, ~30:47 fps
			au = ingest.AccessUnit{Kind: ingest.KindVideo, DTS: d, PTS: d, Key: i%240 == 0, NALUs: nalu}
		}
		feed.Push(au)
	}
	feed.End(ingest.EndStopped, "")
	m.Consume(context.Background(), b, feed)
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// TestConsumeAllocatesNothingPerUnit: the media-path side of moderation
// costs no allocation per access unit (the Moderator's per-broadcast setup
// is the same for both runs and cancels out).
func TestConsumeAllocatesNothingPerUnit(t *testing.T) {
	opts := DefaultOptions()
	opts.FFmpegPath = "/nonexistent/ffmpeg" // samples fail to decode at once
	opts.Screeners = []Screener{allowAll{}}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newModerator(t, opts)
	per := func(n int) float64 {
		// Feeds are built before counting; only Consume is measured.
		runtime.GC()
		best := -1.0
		for range 3 {
			a := mallocs()
			consumeUnits(m, n)
			got := float64(mallocs() - a)
			if best < 0 || got < best {
				best = got
			}
		}
		return best
	}
	small, large := per(240), per(24000)
	perUnit := (large - small) / (24000 - 240)
	// A sampled keyframe (one in 240 units here) may allocate on its way to
	// the screener; the other units must not.
	t.Logf("Consume: %.0f mallocs for 240 units, %.0f for 24000: %.4f per unit", small, large, perUnit)
	if perUnit > 0.05 {
		t.Errorf("Consume allocates %.3f times per access unit, want ~0 (only per sampled keyframe)", perUnit)
	}
}

// BenchmarkConsume is the cost of Consume per access unit.
func BenchmarkConsume(b *testing.B) {
	opts := DefaultOptions()
	opts.FFmpegPath = "/nonexistent/ffmpeg"
	opts.Screeners = []Screener{allowAll{}}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newModerator(b, opts)
	track := &ingest.VideoTrack{Codec: ingest.CodecH264, SPS: []byte{0x67}, PPS: []byte{0x68}}
	bc := &ingest.Broadcast{ID: "b", Channel: "bench", Tracks: ingest.Tracks{Video: track}}
	nalu := [][]byte{{0x65, 0x88}}
	const batch = 4096
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		b.StopTimer()
		feed := ingest.NewFeed(batch, bc.Tracks)
		for i := 0; i < batch; i++ {
			d := time.Duration(done+i) * 13 * time.Millisecond
			au := ingest.AccessUnit{Kind: ingest.KindAudio, DTS: d, PTS: d, Frame: nalu[0]}
			if i%8 < 5 {
				au = ingest.AccessUnit{Kind: ingest.KindVideo, DTS: d, PTS: d, Key: i%240 == 0, NALUs: nalu}
			}
			feed.Push(au)
		}
		feed.End(ingest.EndStopped, "")
		b.StartTimer()
		m.Consume(context.Background(), bc, feed)
	}
}
