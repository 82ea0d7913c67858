package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/machine"
)

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// cell is a level's figures in the summary table, like the issue's.
func cell(t *trial) string {
	if t == nil {
		return "—"
	}
	s := "held"
	if !t.held {
		s = "**not held** (" + strings.Join(t.why, "; ") + ")"
	}
	return fmt.Sprintf("%s; %.2f %% CPU/stream; %s/stream", s, 100*t.cpu/float64(t.n), mib(t.memPerStream()))
}

func report(w io.Writer, c config, m machine.Description, systems []system, results []*result, took time.Duration) {
	fmt.Fprintf(w, "### Ingest ceiling (%s, bench/ceiling, %v)\n\n", time.Now().UTC().Format("2006-01-02"), took.Round(time.Minute))
	fmt.Fprintf(w, "Machine: `nproc` %s; %s; %s; %s; load average %s before the run, %s after.\n",
		m.Nproc, m.CPU, m.Mem, m.Kernel, m.LoadBefore, m.LoadAfter)
	var vs []string
	for _, s := range systems {
		vs = append(vs, s.name+" "+s.version)
	}
	fmt.Fprintf(w, "Servers: %s. ffmpeg %s; load tool built with %s.\n", strings.Join(vs, "; "), m.FFmpeg, runtime.Version())
	media := c.trial.media
	fmt.Fprintf(w, "Input: %.0f s of 720p30 H.264 (libx264, B-frames, 3 Mbit/s CBR, a keyframe every second) and AAC 128 kbit/s in FLV, %.2f Mbit/s overall, looped with rising timestamps.\n",
		media.Duration().Seconds(), media.Bitrate()/1e6)
	fmt.Fprintf(w, "Publishers: `onair load` (package load) on the same machine, RTMP chunk size %d, each writing what came due every %v, started at %.0f per second; after the last publish was confirmed and %v more, %d sampled playlists were polled once a second for %v while CPU (utime+stime of the server's processes, reaped children included) and RSS (mean of 1 s samples) were measured.\n",
		media.ChunkSize(), c.trial.tick, c.trial.rampRate, c.trial.settle, c.trial.sample, c.trial.window)
	fmt.Fprintf(w, "Held: every publish confirmed, none refused or dropped, none more than %v behind its real-time schedule, every sampled playlist listing a new segment or part within 3 target durations with no HTTP error. Search: up from %d by %d, then bisection to %d. Memory per stream: (RSS loaded − RSS idle + HLS files on tmpfs) / streams.\n\n",
		c.trial.lateAfter, c.start, c.step, c.resolution)

	fmt.Fprint(w, "| |")
	for _, r := range results {
		fmt.Fprintf(w, " %s |", r.system)
	}
	fmt.Fprint(w, "\n|---|")
	for range results {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprint(w, "\n| **ceiling** (most streams held) |")
	for _, r := range results {
		switch {
		case r.hitMax:
			fmt.Fprintf(w, " ≥ %d (the highest level tried) |", r.ceiling)
		case r.ceiling == 0:
			fmt.Fprintf(w, " < %d |", r.failAt)
		default:
			fmt.Fprintf(w, " **%d** (%d not held) |", r.ceiling, r.failAt)
		}
	}
	fmt.Fprintln(w)
	for _, n := range c.levels {
		fmt.Fprintf(w, "| %d streams |", n)
		for _, r := range results {
			fmt.Fprintf(w, " %s |", cell(r.trials[n]))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "| at the ceiling |")
	for _, r := range results {
		if t := r.trials[r.ceiling]; t != nil {
			fmt.Fprintf(w, " %d: %s |", r.ceiling, cell(t))
		} else {
			fmt.Fprint(w, " — |")
		}
	}
	fmt.Fprint(w, "\n\nEvery trial, in the order run:\n\n")
	fmt.Fprintln(w, "| server | streams | held | publish confirmation p50 / p95 / max | server CPU (% of one core) | CPU per stream | RSS idle → loaded | HLS files (tmpfs) | memory per stream | playlists fresh | load tool CPU | load tool tick lag max |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		for _, n := range r.order {
			t := r.trials[n]
			held := "yes"
			if !t.held {
				held = "no: " + strings.Join(t.why, "; ")
			}
			files := "—"
			if t.files > 0 {
				files = mib(float64(t.files))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s / %s / %s | %.0f %% | %.2f %% | %s → %s | %s | %s | %d of %d | %.0f %% | %s |\n",
				r.system, n, held, ms(t.sum.ConfirmP50), ms(t.sum.ConfirmP95), ms(t.sum.ConfirmMax),
				100*t.cpu, 100*t.cpu/float64(n), mib(float64(t.idleRSS)), mib(float64(t.rss)), files, mib(t.memPerStream()),
				t.fresh, t.sampled, 100*t.toolCPU, ms(t.schedLag))
		}
	}
	fmt.Fprintln(w)
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}
