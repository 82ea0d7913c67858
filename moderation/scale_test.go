package moderation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/metricstest"
	"github.com/onairhq/onair/internal/testmedia"
)

// scaleScenario is one load shape for TestModerationScale.
type scaleScenario struct {
	channels int
	spread   time.Duration // broadcasts start evenly within this time
	duration time.Duration // whole run, from the first start
	screen   bool          // a screener is configured (it blocks small, flat frames)
	// badFrom..badTo: each broadcast switches to a red screen at a random
	// moment in this window (zero: never).
	badFrom, badTo time.Duration
	thumbsAt       time.Duration // every channel's thumbnail is asked once at this time (zero: never)
}

var scaleScenarios = map[string]scaleScenario{
	// 200 broadcast starts within 10 s, thumbnails never asked for.
	"burst": {channels: 200, spread: 10 * time.Second, duration: 20 * time.Second},
	// The same, and a directory page asks for every thumbnail once at 12 s.
	"burst-thumbs": {channels: 200, spread: 10 * time.Second, duration: 20 * time.Second, thumbsAt: 12 * time.Second},
	// Screened channels, each turning bad at a random time.
	"screened-10":  {channels: 10, spread: time.Second, duration: 40 * time.Second, screen: true, badFrom: 20 * time.Second, badTo: 35 * time.Second},
	"screened-200": {channels: 200, spread: 10 * time.Second, duration: 40 * time.Second, screen: true, badFrom: 20 * time.Second, badTo: 35 * time.Second},
}

// sizeScreener blocks frames whose JPEG is small: a flat red screen is a few
// KiB at 640 px, the test pattern tens. It decides from the decoded image at
// no cost worth measuring, so the figures are the decoder's, and it records
// each frame's age when screened (keyframe received at ingest -> screened:
// the wait for and the work of decoding).
type sizeScreener struct {
	mu   sync.Mutex
	ages []time.Duration
	per  map[string]int
}

func (s *sizeScreener) Name() string { return "jpeg-size" }
func (s *sizeScreener) Screen(_ context.Context, f *Frame) (Verdict, error) {
	s.mu.Lock()
	s.ages = append(s.ages, time.Since(f.Received))
	s.per[f.Channel]++
	s.mu.Unlock()
	if len(f.JPEG) < 12<<10 {
		return Verdict{Action: Block, Reason: "flat frame"}, nil
	}
	return Verdict{Action: Allow}, nil
}

// hubOfMany is an Enforcer for many channels: TakeDown ends the channel's feed.
type hubOfMany struct {
	mu    sync.Mutex
	feeds map[string]*ingest.Feed
	at    map[string]time.Time
}

func (h *hubOfMany) TakeDown(channel, reason string, ban time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.at[channel]; !ok {
		h.at[channel] = time.Now()
	}
	if f := h.feeds[channel]; f != nil {
		f.End(ingest.EndTakenDown, reason)
	}
	return nil
}

// TestModerationScale measures what moderation costs when many broadcasts
// start at once and when many are screened: ffmpeg processes started, their
// CPU and memory, how old a frame is when screened, and how long after a bad
// keyframe a broadcast is taken down. Set ONAIR_MODERATION_SCALE to a
// scenario name (burst, burst-thumbs, screened-10, screened-200).
func TestModerationScale(t *testing.T) {
	name := os.Getenv("ONAIR_MODERATION_SCALE")
	if name == "" {
		t.Skip("set ONAIR_MODERATION_SCALE=burst|burst-thumbs|screened-10|screened-200 to measure")
	}
	sc, ok := scaleScenarios[name]
	if !ok {
		t.Fatalf("no scenario %q", name)
	}
	if n := len(ffmpegChildren(t)); n != 0 {
		t.Fatalf("%d ffmpeg children already running", n)
	}
	good, bad := encodeGoodThenBad(t)

	h := &hubOfMany{feeds: map[string]*ingest.Feed{}, at: map[string]time.Time{}}
	probe := &sizeScreener{per: map[string]int{}}
	opts := DefaultOptions()
	opts.Enforcer = h
	opts.Logger = quietLogger()
	if mode := os.Getenv("ONAIR_MODERATION_SAMPLE"); mode != "" { // any (default) or keyframes
		opts.Sample = SampleMode(mode)
	}
	if sc.screen {
		opts.Screeners = []Screener{probe}
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}

	var peakProcs, peakAnonSum, peakRSSSum int64
	var peakHeap uint64
	seen := map[int]bool{}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pids := ffmpegChildren(t)
			var rss, anon int64
			for _, pid := range pids {
				seen[pid] = true
				rss += statusKiB(pid, "VmRSS:")
				anon += statusKiB(pid, "RssAnon:")
			}
			peakProcs = max(peakProcs, int64(len(pids)))
			peakRSSSum, peakAnonSum = max(peakRSSSum, rss), max(peakAnonSum, anon)
			if n%10 == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
			}
		}
	}()

	var self0, kids0, self1, kids1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids0)
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	type chanRun struct {
		name       string
		startAt    time.Duration
		badAt      time.Duration // media time of the switch, 0: never
		badRecv    time.Time     // when the first bad keyframe was pushed
		dropped    uint64
		consumeEnd time.Duration
		live       time.Duration
	}
	runs := make([]*chanRun, sc.channels)
	for i := range runs {
		r := &chanRun{name: fmt.Sprintf("ch%03d", i), startAt: sc.spread * time.Duration(i) / time.Duration(sc.channels)}
		if sc.badTo > 0 {
			// Even seconds of media time: the switch lands on a keyframe
			// (1 s GOP) that the sampler takes (one per 2 s from the first),
			// so the latency measured is screening's, not the interval's.
			from, to := int((sc.badFrom-r.startAt)/time.Second)/2, int((sc.badTo-r.startAt)/time.Second)/2
			r.badAt = time.Duration(2*(from+rng.IntN(max(to-from, 1)))) * time.Second
		}
		runs[i] = r
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(r.startAt)))
			b := &ingest.Broadcast{ID: "b-" + r.name, Channel: r.name, Tracks: ingest.Tracks{Video: &good.track}, Started: time.Now()}
			feed := ingest.NewFeed(30, b.Tracks)
			h.mu.Lock()
			h.feeds[r.name] = feed
			h.mu.Unlock()
			consumed := make(chan struct{})
			go func() {
				defer close(consumed)
				m.Consume(context.Background(), b, feed)
			}()
			t0 := time.Now()
			end := sc.duration - r.startAt
			badIdx := int(r.badAt * 30 / time.Second)
			for i := 0; time.Duration(i)*time.Second/30 < end; i++ {
				media := time.Duration(i) * time.Second / 30
				src, j := good, i
				if r.badAt > 0 && i >= badIdx {
					src, j = bad, i-badIdx
				}
				au := src.aus[j%len(src.aus)]
				au.DTS, au.PTS = media, media+au.PTS-au.DTS
				if d := time.Until(t0.Add(media)); d > 0 {
					time.Sleep(d)
				}
				au.Received = time.Now()
				if r.badAt > 0 && i == badIdx {
					r.badRecv = au.Received
				}
				if !feed.Push(au) {
					h.mu.Lock()
					_, down := h.at[r.name]
					h.mu.Unlock()
					if down {
						break
					}
				}
			}
			ended := time.Now()
			r.live = ended.Sub(t0)
			feed.End(ingest.EndStopped, "")
			<-consumed
			r.consumeEnd = time.Since(ended)
			r.dropped = feed.Dropped()
		}()
	}
	var thumbsOK, thumbsAsked int
	var thumbTimes []time.Duration
	if sc.thumbsAt > 0 {
		time.Sleep(time.Until(start.Add(sc.thumbsAt)))
		var mu sync.Mutex
		var tw sync.WaitGroup
		handler := m.ThumbnailHandler()
		for _, r := range runs {
			tw.Add(1)
			go func() {
				defer tw.Done()
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/api/v1/channels/"+r.name+"/thumbnail.jpg", nil)
				req.SetPathValue("name", r.name)
				t0 := time.Now()
				handler.ServeHTTP(rec, req)
				mu.Lock()
				thumbsAsked++
				thumbTimes = append(thumbTimes, time.Since(t0))
				if rec.Code == 200 {
					thumbsOK++
				}
				mu.Unlock()
			}()
		}
		tw.Wait()
	}
	wg.Wait()
	m.Close()
	// Close reaps every decoder, so RUSAGE_CHILDREN holds all their CPU.
	syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids1)
	close(stop)
	sampler.Wait()
	wall := time.Since(start)
	cpu := func(a, b syscall.Rusage) time.Duration {
		return time.Duration(b.Utime.Nano()-a.Utime.Nano()) + time.Duration(b.Stime.Nano()-a.Stime.Nano())
	}
	ff, self := cpu(kids0, kids1), cpu(self0, self1)

	var sb strings.Builder
	metricstest.Write(&sb, m)
	metric := func(name string) string {
		for _, l := range strings.Split(sb.String(), "\n") {
			if strings.HasPrefix(l, name+" ") {
				return strings.Fields(l)[1]
			}
		}
		return "-"
	}
	var dropped uint64
	var slowestConsume time.Duration
	var tdLat []time.Duration
	var missed int
	var live time.Duration
	for _, r := range runs {
		live += r.live
		dropped += r.dropped
		slowestConsume = max(slowestConsume, r.consumeEnd)
		if r.badAt == 0 || r.badRecv.IsZero() {
			continue
		}
		at, ok := h.at[r.name]
		if !ok {
			missed++
			continue
		}
		tdLat = append(tdLat, at.Sub(r.badRecv))
	}
	t.Logf("scenario %s: %d broadcasts started within %v, run %v (wall %v), load average %s", name, sc.channels, sc.spread, sc.duration, wall.Round(time.Millisecond), loadavg())
	t.Logf("ffmpeg: %s processes started (%d distinct pids seen), at most %d at once; CPU %v (%.1f%% of a core over the run, %.2f%% per channel); peak VmRSS sum %.1f MiB, peak RssAnon sum %.1f MiB",
		metric("onair_moderation_decoder_starts_total"), len(seen), peakProcs, ff.Round(time.Millisecond), 100*ff.Seconds()/wall.Seconds(), 100*ff.Seconds()/wall.Seconds()/float64(sc.channels),
		float64(peakRSSSum)/1024, float64(peakAnonSum)/1024)
	t.Logf("this process (moderation, feeders, screener): CPU %v (%.1f%% of a core), Go heap in use peak %.1f MiB", self.Round(time.Millisecond), 100*self.Seconds()/wall.Seconds(), float64(peakHeap)/(1<<20))
	t.Logf("frames decoded %s, samples %s, superseded %s; media path: %d units dropped by feeds, slowest Consume return %v",
		metric("onair_moderation_frames_decoded_total"), metric("onair_moderation_samples_total"), metric("onair_moderation_samples_superseded_total"), dropped, slowestConsume.Round(time.Millisecond))
	if sc.screen {
		probe.mu.Lock()
		ages := slices.Clone(probe.ages)
		screened := 0
		for _, n := range probe.per {
			screened += n
		}
		probe.mu.Unlock()
		t.Logf("screened frames %d (%.2f per channel per second); keyframe age when screened (wait + decode): %s",
			screened, float64(screened)/live.Seconds(), quantiles(ages))
		t.Logf("takedowns: %d of %d bad broadcasts (missed %d); bad keyframe received -> TakeDown: %s", len(tdLat), len(tdLat)+missed, missed, quantiles(tdLat))
	}
	if sc.thumbsAt > 0 {
		t.Logf("thumbnails: %d of %d answered 200; answer time %s", thumbsOK, thumbsAsked, quantiles(thumbTimes))
	}
	t.Log(metricLines(sb.String(), "onair_moderation_decode"))
}

// encodeGoodThenBad encodes an OBS-like stream (720p30, 3 Mbit/s, keyframe
// every second, B-frames, RTMP timestamps) of 4 s of test pattern then 2 s
// of red, in one go so that both parts decode with the same parameter sets,
// and splits it at the first red keyframe.
func encodeGoodThenBad(t *testing.T) (good, bad clip) {
	t.Helper()
	c := testmedia.Make(t, testmedia.Spec{Video: true, Seconds: 6, Size: "1280x720", Bitrate: "3M",
		ExtraArgs: []string{"-preset", "veryfast", "-bf", "2", "-vf", "drawbox=c=red:t=fill:enable='gte(t\\,4)'"}})
	var aus []ingest.AccessUnit
	for _, au := range c.Units {
		if au.Kind == ingest.KindVideo {
			aus = append(aus, au)
		}
	}
	split := -1
	for i := 4*30 - 5; i < len(aus) && split < 0; i++ {
		if aus[i].Key {
			split = i
		}
	}
	if split < 0 {
		t.Fatal("no keyframe at 4 s")
	}
	good = clip{track: *c.Tracks.Video, aus: aus[:split], fps: 30}
	bad = clip{track: *c.Tracks.Video, aus: aus[split:], fps: 30}
	return good, bad
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))].Round(time.Millisecond) }
	return fmt.Sprintf("n=%d mean %v p50 %v p95 %v max %v", len(d), (sum / time.Duration(len(d))).Round(time.Millisecond), q(0.5), q(0.95), d[len(d)-1].Round(time.Millisecond))
}

func metricLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
