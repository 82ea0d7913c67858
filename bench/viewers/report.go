package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/machine"
	"github.com/onairhq/onair/load"
)

func report(w io.Writer, c config, m machine.Description, input string, vs []*variantResult, ab *abandonResult, took time.Duration) {
	fmt.Fprintf(w, "### Viewers on one origin (%s, bench/viewers, %v)\n\n", time.Now().UTC().Format("2006-01-02"), took.Round(time.Minute))
	fmt.Fprintf(w, "Machine: `nproc` %s; %s; %s; %s; load average %s before the run, %s after.\n",
		m.Nproc, m.CPU, m.Mem, m.Kernel, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(w, "onair %s (flags: `%s`); ffmpeg %s; players built with %s.\n",
		strings.TrimPrefix(machine.Output(c.onair, "version"), "onair "), strings.Join(c.onairFlags, " "), m.FFmpeg, runtime.Version())
	fmt.Fprintf(w, "Input: %s, published by `ffmpeg -re -stream_loop -1 -c copy` to one channel (720p30 H.264 with B-frames, 3 Mbit/s, keyframe every second, AAC), onair's defaults (1 s segments, 200 ms parts, 7 segments).\n", inputName(c, input))
	fmt.Fprintf(w, "Players: `onair load play` (package load) on the same machine, %d per variant on a fresh onair, started over %v; figures over a %v window that opens %v after the ramp. "+
		"LL-HLS players send a blocking reload (`_HLS_msn`, `_HLS_part`, `_HLS_skip=YES`) for the part after the newest listed and fetch every new part, as hls.js in low-latency mode; "+
		"fMP4 and MPEG-TS players reload the playlist every half target duration and fetch every new segment. Each player keeps one connection; playlists are asked for gzipped.\n",
		c.players, c.ramp, c.window, c.settle)
	fmt.Fprintf(w, "onair CPU: utime+stime of onair and its children (reaped included) over the window, in %% of one core; RSS: idle (published, no player) → mean of 1 s samples over the window (peak). A player is held when it saw new media all through the window, with no stall (nothing new for 3 target durations), no skipped part or segment and no HTTP error.\n\n")

	fmt.Fprintln(w, "| variant | players held | stalls | errors | playlist req/s | media req/s | sent | onair CPU (% of one core) | onair RSS idle → loaded (peak) | onair goroutines idle → peak | playlist answer p50 / p99 | wake-up spread p50 / p99 | media p50 / p99 | players' CPU |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range vs {
		p := r.play
		answer := p.Plain
		kind := "plain reload"
		if p.LowLatency {
			answer, kind = p.Blocking, "blocking"
		}
		spread := "—"
		if p.LowLatency {
			spread = pair(p.WakeSpread)
		}
		held := fmt.Sprintf("%d of %d", p.Held, p.Players)
		if len(r.why) > 0 {
			held += " (" + strings.Join(r.why, "; ") + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %.0f | %.0f | %.1f Mbit/s | %.1f %% | %s → %s (%s) | %d → %d | %s (%s) | %s | %s | %.0f %% |\n",
			r.variant, held, p.Stalls, errorText(p), p.PerSecond(p.PlaylistRequests), p.PerSecond(p.MediaRequests),
			8*p.PerSecond(p.PlaylistBytes+p.MediaBytes)/1e6, 100*r.cpu, mib(r.idleRSS), mib(r.rss), mib(r.peakRSS),
			r.idleGoroutines, r.peakGoroutines, pair(answer), kind, spread, pair(p.Media), 100*r.toolCPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Blocking answer: from sending a blocking reload to its answer read in full; it includes the wait for the part asked for (up to one part, 200 ms), so a loaded origin shows as a longer tail. Wake-up spread: for each part that several players waited for, how much later each got its answer than the first did (the origin's fan-out time for one playlist update).")
	fmt.Fprintln(w)
	if ab == nil {
		return
	}
	a := ab.AbandonResult
	fmt.Fprintf(w, "Abandoned blocking reloads (a fresh LL-HLS onair; its publisher killed, so the playlist stalls inside the reconnect grace period%s): `onair load abandon` asks for the segment after the one in progress, part 0, from %d requests in flight at once, each cancelled %v–%v after it was sent. onair's goroutines and heap are read from /metrics, the heap after a forced collection (`/debug/pprof/heap?gc=1` on the debug address), every 100 ms; back means goroutines within %d and heap within %s of the baseline (the median of 5 samples before).\n\n",
		map[bool]string{true: "", false: "; **the playlist was not standing still**"}[ab.stalled],
		c.abandon.Concurrency, c.abandon.CancelMin, c.abandon.CancelMax, load.DefaultGoroutineSlack, mib(load.DefaultHeapSlack))
	fmt.Fprintln(w, "| requests | sent in | cancelled unanswered | answered first | failed | goroutines before / peak / after | heap (live) before / peak / after | RSS before / peak / after | back to baseline after the burst: goroutines / heap | hold limit |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	back := backText(a.GoroutinesBack) + " / " + backText(a.HeapBack)
	if !a.Back {
		back += " (followed for " + (a.After.At - a.Burst).Round(time.Millisecond).String() + ")"
	}
	fmt.Fprintf(w, "| %d | %v | %d | %s | %d | %d / %d / %d | %s / %s / %s | %s / %s / %s | %s | %v |\n\n",
		a.Requests, a.Burst.Round(time.Millisecond), a.Abandoned, answeredText(a.Answered), a.Failed,
		a.Before.Goroutines, a.Peak.Goroutines, a.After.Goroutines, mib(a.Before.Heap), mib(a.Peak.Heap), mib(a.After.Heap),
		mib(ab.rssBefore), mib(ab.rssPeak), mib(ab.rssAfter), back, a.Hold)
}

func backText(d time.Duration) string {
	if d < 0 {
		return "**not back**"
	}
	return d.Round(time.Millisecond).String()
}

func inputName(c config, input string) string {
	if c.input != "" {
		return "`" + input + "`"
	}
	return fmt.Sprintf("%v encoded by `onair load input`, looped", c.inputDur)
}

func pair(l load.Latency) string {
	if l.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s", ms(l.P50), ms(l.P99))
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func errorText(p load.PlayResult) string {
	if len(p.Errors) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(p.Errors))
	for k := range p.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, p.Errors[k]))
	}
	return strings.Join(parts, ", ")
}

func answeredText(m map[int]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%d × HTTP %d", n, code))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
