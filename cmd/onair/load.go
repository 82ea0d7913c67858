package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/onairhq/onair/load"
)

const loadUsage = `usage:
  onair load publish -url rtmp://HOST:PORT/APP -input FILE.flv -n N [flags]
                                  replay FILE.flv from N publishers at its real rate
  onair load watch -url 'http://HOST/hls/{channel}/index.m3u8' -n N [flags]
                                  poll playlists once a second and report stalls
  onair load play -url http://HOST/hls/CHANNEL/index.m3u8 -n N [flags]
                                  N simulated players of one stream (LL-HLS blocking reloads, or plain reloads)
  onair load abandon -url http://HOST/hls/CHANNEL/index.m3u8 -metrics http://HOST/metrics [flags]
                                  abandoned blocking reloads; report when the server's goroutines and heap are back
  onair load input [-duration 30s] FILE.flv
                                  encode the standard input (720p30 H.264 with B-frames, 3 Mbit/s, AAC) with ffmpeg
  onair load channels -n N [-channel b%d -key benchkey%04d]
                                  print N channels as YAML for onair's configuration
Run "onair load publish -h" for each command's flags.`

// loadCommand runs the load tool.
func loadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(loadUsage)
	}
	switch args[0] {
	case "publish":
		return loadPublish(ctx, args[1:], stdout, stderr)
	case "watch":
		return loadWatch(ctx, args[1:], stdout, stderr)
	case "play":
		return loadPlay(ctx, args[1:], stdout, stderr)
	case "abandon":
		return loadAbandon(ctx, args[1:], stdout, stderr)
	case "input":
		return loadInput(ctx, args[1:], stderr)
	case "channels":
		return loadChannels(args[1:], stdout, stderr)
	}
	return errors.New(loadUsage)
}

// streamFlags name the publishers and their channels.
type streamFlags struct {
	n                int
	key, channel     string
	keysFile         string
	first            int
	watchURL         string
	sample           int
	interval         time.Duration
	stallAfter       float64
	duration         time.Duration
	report           string
	progress         time.Duration
	watchURLFlagName string
}

func (f *streamFlags) register(fs *flag.FlagSet, watchFlag string) {
	f.watchURLFlagName = watchFlag
	fs.IntVar(&f.n, "n", 1, "number of streams (with -keys: at most this many of the file's, 0 for all)")
	fs.StringVar(&f.key, "key", "s%d", "RTMP stream name (the stream key) of publisher i, a pattern with one %d (i from -first)")
	fs.StringVar(&f.channel, "channel", "", "channel name of publisher i as the server shows it, a pattern with one %d (default: the -key pattern)")
	fs.StringVar(&f.keysFile, "keys", "", "file of streams instead of patterns, one per line: KEY or CHANNEL:KEY (onair's channel syntax)")
	fs.IntVar(&f.first, "first", 0, "index of the first stream in the patterns")
	fs.StringVar(&f.watchURL, watchFlag, "", "playlist URL to poll, with {channel} for the channel name, e.g. http://127.0.0.1:8080/hls/{channel}/index.m3u8")
	fs.IntVar(&f.sample, "watch-sample", 10, "number of channels whose playlists are polled, spread over all (0: every one)")
	fs.DurationVar(&f.interval, "watch-interval", load.DefaultWatchInterval, "time between polls of one playlist")
	fs.Float64Var(&f.stallAfter, "stall-after", load.DefaultStallAfter, "target durations without a new segment or part that count as a stall")
	fs.DurationVar(&f.duration, "duration", 0, "how long to run (0: until interrupted)")
	fs.StringVar(&f.report, "report", "", "write every publisher's and playlist's figures to this JSON file")
	fs.DurationVar(&f.progress, "progress", 5*time.Second, "print progress to stderr this often (0: never)")
}

// streams builds the stream list from the patterns or the keys file.
func (f *streamFlags) streams() ([]load.Stream, error) {
	if f.keysFile != "" {
		return readStreams(f.keysFile, f.n)
	}
	if f.n < 1 {
		return nil, errors.New("-n must be at least 1")
	}
	if f.channel == "" {
		f.channel = f.key
	}
	for _, p := range []string{f.key, f.channel} {
		if err := checkPattern(p); err != nil {
			return nil, err
		}
	}
	out := make([]load.Stream, f.n)
	for i := range out {
		out[i] = load.Stream{Name: fmt.Sprintf(f.key, f.first+i), Channel: fmt.Sprintf(f.channel, f.first+i)}
	}
	return out, nil
}

// checkPattern accepts a name pattern with exactly one integer verb.
func checkPattern(p string) error {
	s := fmt.Sprintf(p, 7)
	if strings.Contains(s, "%!") || strings.Count(strings.ReplaceAll(p, "%%", ""), "%") != 1 || !strings.Contains(s, "7") {
		return fmt.Errorf("pattern %q: want exactly one %%d (such as b%%d or key%%04d)", p)
	}
	return nil
}

func readStreams(path string, n int) ([]load.Stream, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []load.Stream
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") || t == "channels:" || t == "channel:" {
			continue
		}
		t = strings.Trim(strings.TrimPrefix(t, "- "), `"`) // a YAML list item works too
		ch, key, ok := strings.Cut(t, ":")
		if !ok {
			ch, key = t, t
		}
		if ch == "" || key == "" {
			return nil, fmt.Errorf("%s:%d: want KEY or CHANNEL:KEY", path, line)
		}
		out = append(out, load.Stream{Name: key, Channel: ch})
		if n > 0 && len(out) == n {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no stream", path)
	}
	return out, nil
}

// watchURLs picks the sampled channels' playlist URLs, spread evenly.
func (f *streamFlags) watchURLs(streams []load.Stream) ([]string, error) {
	if f.watchURL == "" {
		return nil, nil
	}
	if !strings.Contains(f.watchURL, "{channel}") {
		return nil, fmt.Errorf("-%s %q: want {channel} in the URL", f.watchURLFlagName, f.watchURL)
	}
	k := f.sample
	if k <= 0 || k > len(streams) {
		k = len(streams)
	}
	urls := make([]string, k)
	for j := range urls {
		urls[j] = strings.ReplaceAll(f.watchURL, "{channel}", streams[j*len(streams)/k].Channel)
	}
	return urls, nil
}

func loadPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf streamFlags
	sf.register(fs, "watch")
	rtmpURL := fs.String("url", "", "RTMP URL of the application, rtmp://HOST[:PORT]/APP (required)")
	input := fs.String("input", "", "FLV file to replay, looped with rising timestamps (required; see onair load input)")
	ramp := fs.Duration("ramp", 0, "spread the publishers' starts evenly over this long (e.g. 10s; 0: all at once)")
	chunk := fs.Int("chunk-size", load.DefaultChunkSize, "RTMP chunk size the publishers announce and use")
	late := fs.Duration("late", load.DefaultLateAfter, "a publisher this far behind its real-time schedule counts as late")
	confirm := fs.Duration("confirm-timeout", load.DefaultConfirmTimeout, "longest wait from connect to NetStream.Publish.Start")
	tick := fs.Duration("tick", load.DefaultTick, "scheduler period (messages due within one tick go out in one write)")
	cpuProfile := fs.String("cpuprofile", "", "write the load tool's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *rtmpURL == "" || *input == "" {
		return errors.New("-url and -input are required (onair load publish -h)")
	}
	target, err := load.ParseTarget(*rtmpURL)
	if err != nil {
		return err
	}
	streams, err := sf.streams()
	if err != nil {
		return err
	}
	urls, err := sf.watchURLs(streams)
	if err != nil {
		return err
	}
	tags, err := load.ReadFLVFile(*input)
	if err != nil {
		return err
	}
	media, err := load.PrepareMedia(tags, *chunk)
	if err != nil {
		return fmt.Errorf("%s: %w", *input, err)
	}
	fmt.Fprintf(stderr, "replaying %s (%.1f s, %.2f Mbit/s) from %d publishers to %s\n",
		*input, media.Duration().Seconds(), media.Bitrate()/1e6, len(streams), *rtmpURL)
	run, err := load.StartPublish(ctx, load.PublishOptions{
		Target: target, Media: media, Streams: streams, Ramp: *ramp, Duration: sf.duration,
		ConfirmTimeout: *confirm, LateAfter: *late, Tick: *tick,
	})
	if err != nil {
		return err
	}
	var watch *load.Watch
	if len(urls) > 0 {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		watch = load.StartWatch(wctx, load.WatchOptions{URLs: urls, Interval: sf.interval, StallAfter: sf.stallAfter})
		go func() { <-run.Done(); cancel() }()
	}
	reportProgress(run.Done(), sf.progress, stderr, func() string {
		p := run.Progress()
		line := fmt.Sprintf("%4.0fs  started %d  confirmed %d  connecting %d  refused %d  failed %d  dropped %d  late %d  %.1f Mbit/s  CPU %.0f %%",
			p.Elapsed.Seconds(), p.Started, p.Live, p.Connecting, p.Refused, p.Failed, p.Dropped, p.Late,
			float64(p.Sent*8)/p.Elapsed.Seconds()/1e6, 100*p.CPU.Seconds()/p.Elapsed.Seconds())
		if watch != nil {
			stalled, failing := watch.Stalled()
			line += fmt.Sprintf("  playlists stalled %d, failing %d", stalled, failing)
		}
		return line
	})
	res := run.Wait()
	res.WriteText(stdout)
	var playlists []load.PlaylistReport
	if watch != nil {
		playlists = watch.Wait()
		writePlaylists(stdout, playlists)
	}
	if sf.report != "" {
		if err := writeReport(sf.report, map[string]any{"summary": res.Summary(), "publishers": res.Publishers, "playlists": playlists}); err != nil {
			return err
		}
	}
	s := res.Summary()
	fresh := 0
	for _, p := range playlists {
		if p.Fresh() {
			fresh++
		}
	}
	if s.Confirmed < s.Publishers || s.Dropped > 0 || s.Late > 0 || fresh < len(playlists) {
		return errors.New("load not held (see above)")
	}
	return nil
}

func loadWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf streamFlags
	sf.register(fs, "url")
	if err := fs.Parse(args); err != nil {
		return err
	}
	streams, err := sf.streams()
	if err != nil {
		return err
	}
	if sf.watchURL == "" {
		return errors.New("-url is required (onair load watch -h)")
	}
	urls, err := sf.watchURLs(streams)
	if err != nil {
		return err
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if sf.duration > 0 {
		wctx, cancel = context.WithTimeout(ctx, sf.duration)
	}
	defer cancel()
	watch := load.StartWatch(wctx, load.WatchOptions{URLs: urls, Interval: sf.interval, StallAfter: sf.stallAfter})
	start := time.Now()
	reportProgress(wctx.Done(), sf.progress, stderr, func() string {
		stalled, failing := watch.Stalled()
		return fmt.Sprintf("%4.0fs  playlists %d  stalled %d  failing %d", time.Since(start).Seconds(), len(urls), stalled, failing)
	})
	playlists := watch.Wait()
	writePlaylists(stdout, playlists)
	if sf.report != "" {
		if err := writeReport(sf.report, map[string]any{"playlists": playlists}); err != nil {
			return err
		}
	}
	for _, p := range playlists {
		if !p.Fresh() {
			return errors.New("not every playlist stayed fresh (see above)")
		}
	}
	return nil
}

func loadPlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load play", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o load.PlayOptions
	fs.StringVar(&o.URL, "url", "", "multivariant or media playlist every player opens (required)")
	fs.IntVar(&o.Players, "n", 1, "number of players")
	fs.DurationVar(&o.Ramp, "ramp", 0, "spread the players' starts evenly over this long (e.g. 10s)")
	fs.DurationVar(&o.Settle, "settle", 0, "leave this long after the ramp out of the figures (the whole run counts in the progress lines)")
	duration := fs.Duration("duration", 0, "how long to run, ramp included (0: until interrupted)")
	fs.Float64Var(&o.StallAfter, "stall-after", load.DefaultStallAfter, "target durations without a new part or segment that count as a stall")
	fs.BoolVar(&o.NoDelta, "no-delta", false, "never ask for delta updates (_HLS_skip=YES), which players ask for when the playlist offers them")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", load.DefaultRequestTimeout, "longest wait for one answer (keep it above the origin's hold limit)")
	report := fs.String("report", "", "write the result to this JSON file")
	progress := fs.Duration("progress", 5*time.Second, "print progress to stderr this often (0: never)")
	cpuProfile := fs.String("cpuprofile", "", "write the load tool's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.URL == "" || o.Players < 1 {
		return errors.New("-url and -n ≥ 1 are required (onair load play -h)")
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if *duration > 0 {
		pctx, cancel = context.WithTimeout(ctx, *duration)
	}
	defer cancel()
	play, err := load.StartPlay(pctx, o)
	if err != nil {
		return err
	}
	var last load.PlayProgress
	reportProgress(play.Done(), *progress, stderr, func() string {
		p := play.Progress()
		dt := (p.Elapsed - last.Elapsed).Seconds()
		line := fmt.Sprintf("%4.0fs  players %d  playing %d  stalled now %d  stalls %d  errors %d  playlists %.0f/s  media %.0f/s  %.1f Mbit/s  CPU %.0f %%",
			p.Elapsed.Seconds(), p.Started, p.Playing, p.StalledNow, p.Stalls, p.Errors,
			float64(p.PlaylistRequests-last.PlaylistRequests)/dt, float64(p.MediaRequests-last.MediaRequests)/dt,
			float64(8*(p.Bytes-last.Bytes))/dt/1e6, 100*p.CPU.Seconds()/p.Elapsed.Seconds())
		last = p
		return line
	})
	res := play.Wait()
	res.WriteText(stdout)
	if *report != "" {
		if err := writeReport(*report, res); err != nil {
			return err
		}
	}
	if res.Held < res.Players {
		return fmt.Errorf("%d of %d players not held (see above)", res.Players-res.Held, res.Players)
	}
	return nil
}

func loadAbandon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load abandon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o load.AbandonOptions
	fs.StringVar(&o.URL, "url", "", "multivariant or media playlist of a stalled LL-HLS stream (required)")
	fs.StringVar(&o.MetricsURL, "metrics", "", "the server's Prometheus metrics, with go_goroutines and go_memstats_heap_alloc_bytes (required)")
	fs.StringVar(&o.GCURL, "gc", "", "URL requested before each metrics sample to make the server collect garbage (onair: http://DEBUG-ADDR/debug/pprof/heap?gc=1)")
	fs.IntVar(&o.Requests, "n", 20000, "requests to send")
	fs.IntVar(&o.Concurrency, "concurrency", load.DefaultAbandonConcurrency, "requests in flight at once")
	fs.DurationVar(&o.CancelMin, "cancel-min", load.DefaultCancelMin, "shortest time before a request is cancelled")
	fs.DurationVar(&o.CancelMax, "cancel-max", load.DefaultCancelMax, "longest time before a request is cancelled")
	fs.DurationVar(&o.SampleEvery, "sample", 100*time.Millisecond, "metrics sampling period")
	fs.DurationVar(&o.SettleLimit, "settle-limit", load.DefaultSettleLimit, "longest wait for the baseline after the burst")
	fs.IntVar(&o.GoroutineSlack, "goroutine-slack", load.DefaultGoroutineSlack, "goroutines above the baseline that still count as back")
	heapSlack := fs.Float64("heap-slack-mib", float64(load.DefaultHeapSlack)/(1<<20), "heap above the baseline that still counts as back, MiB")
	within := fs.Duration("within", 0, "exit with status 1 unless back within this long after the burst (0: the hold limit, 3 target durations)")
	report := fs.String("report", "", "write the result, with every sample, to this JSON file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.URL == "" || o.MetricsURL == "" || o.Requests < 1 {
		return errors.New("-url, -metrics and -n ≥ 1 are required (onair load abandon -h)")
	}
	o.HeapSlack = int64(*heapSlack * (1 << 20))
	res, err := load.Abandon(ctx, o)
	if err != nil {
		return err
	}
	res.WriteText(stdout)
	if *report != "" {
		if err := writeReport(*report, res); err != nil {
			return err
		}
	}
	limit := *within
	if limit <= 0 {
		limit = res.Hold
	}
	if !res.Back || res.BackAfter > limit {
		return fmt.Errorf("not back to baseline within %v", limit)
	}
	return nil
}

// startCPUProfile writes the load tool's own CPU profile to path until
// stop is called; with an empty path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// reportProgress prints line() every interval until done is closed.
func reportProgress(done <-chan struct{}, every time.Duration, w io.Writer, line func() string) {
	if every <= 0 {
		<-done
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintln(w, line())
		}
	}
}

func writePlaylists(w io.Writer, ps []load.PlaylistReport) {
	fresh, stalls, errs := 0, 0, 0
	var still time.Duration
	for _, p := range ps {
		if p.Fresh() {
			fresh++
		}
		stalls += p.Stalls
		errs += p.Errors
		still = max(still, p.MaxStill)
	}
	fmt.Fprintf(w, "playlists %d: fresh %d, stalls %d, HTTP or playlist errors %d; longest without a new segment or part %v\n",
		len(ps), fresh, stalls, errs, still.Round(10*time.Millisecond))
	for _, p := range ps {
		if p.Fresh() {
			continue
		}
		why := fmt.Sprintf("stalls %d (longest %v, target %v), errors %d", p.Stalls, p.MaxStill.Round(10*time.Millisecond), p.Target, p.Errors)
		switch {
		case !p.Appeared:
			why = fmt.Sprintf("never answered (%d polls)", p.Polls)
		case p.Ended:
			why += ", ended"
		}
		if p.LastError != "" {
			why += "; last error: " + p.LastError
		}
		fmt.Fprintf(w, "  %s: %s\n", p.URL, why)
	}
}

func writeReport(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func loadInput(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load input", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("duration", 30*time.Second, "length of the recording (it loops)")
	ffmpeg := fs.String("ffmpeg", "ffmpeg", "ffmpeg binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: onair load input [-duration 30s] FILE.flv")
	}
	return load.EncodeInput(ctx, *ffmpeg, fs.Arg(0), *dur)
}

func loadChannels(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair load channels", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1, "number of channels")
	channel := fs.String("channel", "b%d", "channel name pattern (one %d)")
	key := fs.String("key", "benchkey%04d", "stream key pattern (one %d); load-test keys, not secrets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, p := range []string{*channel, *key} {
		if err := checkPattern(p); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "channels:")
	for i := range *n {
		fmt.Fprintf(stdout, "  - %q\n", fmt.Sprintf(*channel, i)+":"+fmt.Sprintf(*key, i))
	}
	return nil
}
