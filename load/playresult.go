package load

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"time"
)

// PlayResult is what the players saw in the measurement window: from
// Ramp + Settle after the start to the end of the run.
type PlayResult struct {
	Players int `json:"players"`
	// Started counts the players started; Appeared those that read a
	// media playlist; Ended those whose playlist ended (EXT-X-ENDLIST).
	Started  int `json:"started"`
	Appeared int `json:"appeared"`
	Ended    int `json:"ended"`
	// Held counts the players that read a media playlist and in the
	// window saw new media, no stall, no gap and no error.
	Held int `json:"held"`
	// LowLatency says the players followed an LL-HLS playlist with
	// blocking reloads (all do, or none).
	LowLatency bool          `json:"low_latency"`
	Window     time.Duration `json:"window_ns"`
	Elapsed    time.Duration `json:"elapsed_ns"`

	PlaylistRequests int64 `json:"playlist_requests"`
	MediaRequests    int64 `json:"media_requests"`
	// PlaylistBytes and MediaBytes are response bodies as sent (playlists
	// gzipped when the server gzips them).
	PlaylistBytes int64 `json:"playlist_bytes"`
	MediaBytes    int64 `json:"media_bytes"`
	// Parts and Segments count the media objects fetched; Gaps the times
	// a player's next one was not the one after its last (it fell so far
	// behind that media left the playlist unseen).
	Parts    int64 `json:"parts"`
	Segments int64 `json:"segments"`
	Gaps     int   `json:"gaps"`
	// Errors counts failed requests by kind and status ("playlist HTTP
	// 503", "media network error", "playlist unreadable").
	Errors map[string]int `json:"errors"`
	// Stalls counts the times a player went more than StallAfter target
	// durations without a new part or segment; PlayersStalled how many
	// players did; MaxStill is the longest wait for a new one.
	Stalls         int           `json:"stalls"`
	PlayersStalled int           `json:"players_stalled"`
	MaxStill       time.Duration `json:"max_still_ns"`

	// Blocking is the time from sending a blocking reload to its answer
	// read in full (it includes the wait for the part asked for); Plain
	// that of other playlist reloads; Media that of media requests.
	Blocking Latency `json:"blocking"`
	Plain    Latency `json:"plain"`
	Media    Latency `json:"media"`
	// WakeSpread is, for each part several players waited for, how much
	// later each got its answer than the first did: the origin's fan-out
	// time for one playlist update.
	WakeSpread Latency `json:"wake_spread"`

	// CPU is this process's user+system time over the run.
	CPU time.Duration `json:"cpu_ns"`

	PerPlayer []PlayerReport `json:"per_player"`
}

// PlayerReport is what one player saw in the window.
type PlayerReport struct {
	Index    int           `json:"index"`
	Held     bool          `json:"held"`
	Parts    int64         `json:"parts"`
	Segments int64         `json:"segments"`
	Gaps     int           `json:"gaps"`
	Advances int           `json:"advances"` // playlist answers with new media
	Stalls   int           `json:"stalls"`
	MaxStill time.Duration `json:"max_still_ns"`
	Errors   int           `json:"errors"`
}

// Latency is a distribution of durations.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func latencyOf(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	return Latency{N: len(d), P50: Percentile(d, 0.50), P99: Percentile(d, 0.99), Max: d[len(d)-1]}
}

func (l Latency) String() string {
	if l.N == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %v, p99 %v, max %v (%d)", ms(l.P50), ms(l.P99), ms(l.Max), l.N)
}

func (p *Play) collect(end time.Time) PlayResult {
	res := PlayResult{Players: len(p.players), Errors: map[string]int{},
		Elapsed: end.Sub(p.start), Window: max(end.Sub(p.measureFrom), 0), CPU: cpuTime() - p.cpu0}
	var plain, media []time.Duration
	var blocking []reload
	lowLatency := 0
	for _, pl := range p.players {
		st := pl.stats
		if pl.state.Load() != playerWaiting {
			res.Started++
		}
		if pl.appeared {
			res.Appeared++
			if pl.parts {
				lowLatency++
			}
		}
		if pl.state.Load() == playerEnded {
			res.Ended++
		}
		res.PlaylistRequests += st.playlistReqs
		res.MediaRequests += st.mediaReqs
		res.PlaylistBytes += st.playlistBytes
		res.MediaBytes += st.mediaBytes
		res.Parts += st.parts
		res.Segments += st.segments
		errs := 0
		for k, n := range st.errors {
			res.Errors[k] += n
			errs += n
		}
		res.Stalls += st.stalls
		if st.stalls > 0 {
			res.PlayersStalled++
		}
		res.MaxStill = max(res.MaxStill, st.maxStill)
		res.Gaps += st.gaps
		held := pl.appeared && st.advances > 0 && st.stalls == 0 && errs == 0 && st.gaps == 0
		if held {
			res.Held++
		}
		res.PerPlayer = append(res.PerPlayer, PlayerReport{Index: pl.index, Held: held, Parts: st.parts, Segments: st.segments,
			Gaps: st.gaps, Advances: st.advances, Stalls: st.stalls, MaxStill: st.maxStill, Errors: errs})
		plain = append(plain, st.plain...)
		media = append(media, st.media...)
		blocking = append(blocking, st.blocking...)
	}
	res.LowLatency = lowLatency > 0 && lowLatency == res.Appeared
	res.Plain, res.Media = latencyOf(plain), latencyOf(media)
	waits := make([]time.Duration, len(blocking))
	for i, r := range blocking {
		waits[i] = time.Duration(r.answered - r.sent)
	}
	res.Blocking = latencyOf(waits)
	res.WakeSpread = latencyOf(wakeSpread(blocking))
	return res
}

// wakeSpread returns, for every blocking reload sent before the first
// answer to the same request came, how much later than that first answer
// it was answered.
func wakeSpread(rs []reload) []time.Duration {
	first := map[newest]int64{}
	for _, r := range rs {
		if f, ok := first[r.asked]; !ok || r.answered < f {
			first[r.asked] = r.answered
		}
	}
	var out []time.Duration
	for _, r := range rs {
		if f := first[r.asked]; r.sent < f {
			out = append(out, time.Duration(r.answered-f))
		}
	}
	return out
}

// PerSecond is n over the window, per second (0 for an empty window).
func (r PlayResult) PerSecond(n int64) float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(n) / r.Window.Seconds()
}

// ErrorCount is the number of failed requests.
func (r PlayResult) ErrorCount() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// WriteText writes a human-readable summary.
func (r PlayResult) WriteText(w io.Writer) {
	mode := "plain HLS: reload every half target duration, every new segment"
	if r.LowLatency {
		mode = "LL-HLS: blocking reloads, every new part"
	}
	fmt.Fprintf(w, "players %d (%s): started %d, read a playlist %d, held %d, stalled %d, playlist ended %d\n",
		r.Players, mode, r.Started, r.Appeared, r.Held, r.PlayersStalled, r.Ended)
	fmt.Fprintf(w, "window %v (of %v): playlists %.1f req/s, media %.1f req/s (%d parts, %d segments), %.2f Mbit/s (playlists %.2f)\n",
		r.Window.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond),
		r.PerSecond(r.PlaylistRequests), r.PerSecond(r.MediaRequests), r.Parts, r.Segments,
		8*r.PerSecond(r.PlaylistBytes+r.MediaBytes)/1e6, 8*r.PerSecond(r.PlaylistBytes)/1e6)
	fmt.Fprintf(w, "stalls %d (longest without new media %v); gaps %d; errors %d\n", r.Stalls, ms(r.MaxStill), r.Gaps, r.ErrorCount())
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %d\n", k, r.Errors[k])
	}
	if r.LowLatency {
		fmt.Fprintf(w, "blocking reload sent → answered: %v\n", r.Blocking)
		fmt.Fprintf(w, "wake-up spread (answer after the first answer to the same reload): %v\n", r.WakeSpread)
	} else {
		fmt.Fprintf(w, "playlist reload sent → answered: %v\n", r.Plain)
	}
	fmt.Fprintf(w, "media sent → read: %v\n", r.Media)
	if r.Elapsed > 0 && r.Started > 0 {
		share := r.CPU.Seconds() / r.Elapsed.Seconds()
		fmt.Fprintf(w, "load tool CPU %.2f s over %v: %.1f %% of one core, %.3f %% per player\n",
			r.CPU.Seconds(), r.Elapsed.Round(time.Millisecond), 100*share, 100*share/float64(r.Started))
	}
}
