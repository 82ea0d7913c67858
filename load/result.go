package load

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// PublisherReport is what one publisher saw.
type PublisherReport struct {
	Index   int    `json:"index"`
	Channel string `json:"channel"`
	// State is how it ended: done (ran to the end), refused, failed (no
	// confirmation), dropped (disconnected after confirmation).
	State string `json:"state"`
	// Confirm is the time from starting the TCP connection to
	// NetStream.Publish.Start; 0 if never confirmed.
	Confirm time.Duration `json:"confirm_ns"`
	// Status is the refusal, or an error status the server sent while live.
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
	// Sent counts the bytes written after the confirmation.
	Sent      int64         `json:"sent_bytes"`
	Published time.Duration `json:"published_ns"`
	// MaxLate is how far the publisher fell behind its real-time schedule
	// at worst because the server did not take its bytes (the scheduler's
	// own delay left out); LateMessages counts messages sent more than
	// LateAfter late, likewise.
	MaxLate      time.Duration `json:"max_late_ns"`
	LateMessages int64         `json:"late_messages"`
}

// Result is a finished publishing run.
type Result struct {
	Publishers []PublisherReport
	Elapsed    time.Duration
	// CPU is this process's user+system time over the run.
	CPU time.Duration
	// SchedulerLag is the longest a scheduler tick came late: the load
	// tool's own lateness, as opposed to the server's backpressure.
	SchedulerLag time.Duration
	Bitrate      float64 // of the media, bit/s
	LateAfter    time.Duration
}

// Summary condenses a Result.
type Summary struct {
	Publishers, Confirmed, Refused, Failed, Dropped, Late int
	ConfirmP50, ConfirmP95, ConfirmMax                    time.Duration
	MaxLate                                               time.Duration
	Sent                                                  int64
	// SendRate is the mean rate per confirmed publisher while it was live, bit/s.
	SendRate float64
	// CPUShare is this process's CPU over the run, in cores (1 = one core busy).
	CPUShare float64
}

// Summary counts the outcomes and takes percentiles of the confirmations.
func (r Result) Summary() Summary {
	s := Summary{Publishers: len(r.Publishers)}
	var confirms []time.Duration
	var live time.Duration
	for _, p := range r.Publishers {
		if p.Confirm > 0 {
			s.Confirmed++
			confirms = append(confirms, p.Confirm)
			live += p.Published
		}
		switch p.State {
		case "refused":
			s.Refused++
		case "failed":
			s.Failed++
		case "dropped":
			s.Dropped++
		}
		if p.MaxLate > r.LateAfter {
			s.Late++
		}
		s.MaxLate = max(s.MaxLate, p.MaxLate)
		s.Sent += p.Sent
	}
	slices.Sort(confirms)
	s.ConfirmP50, s.ConfirmP95 = Percentile(confirms, 0.50), Percentile(confirms, 0.95)
	if len(confirms) > 0 {
		s.ConfirmMax = confirms[len(confirms)-1]
	}
	if live > 0 {
		s.SendRate = float64(s.Sent*8) / live.Seconds()
	}
	if r.Elapsed > 0 {
		s.CPUShare = r.CPU.Seconds() / r.Elapsed.Seconds()
	}
	return s
}

// Percentile returns the p-quantile (nearest rank) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteText writes a human-readable summary, with every refusal, failure
// and drop grouped by reason.
func (r Result) WriteText(w io.Writer) {
	s := r.Summary()
	fmt.Fprintf(w, "publishers %d over %v: confirmed %d, refused %d, failed %d, dropped %d, late %d (more than %v behind)\n",
		s.Publishers, r.Elapsed.Round(time.Millisecond), s.Confirmed, s.Refused, s.Failed, s.Dropped, s.Late, r.LateAfter)
	fmt.Fprintf(w, "publish confirmation (TCP connect to NetStream.Publish.Start): p50 %v, p95 %v, max %v\n",
		ms(s.ConfirmP50), ms(s.ConfirmP95), ms(s.ConfirmMax))
	fmt.Fprintf(w, "sent %.1f MiB, %.2f Mbit/s per live publisher (media %.2f Mbit/s); most behind schedule %v; scheduler lag max %v\n",
		float64(s.Sent)/(1<<20), s.SendRate/1e6, r.Bitrate/1e6, ms(s.MaxLate), ms(r.SchedulerLag))
	if s.Publishers > 0 {
		fmt.Fprintf(w, "load tool CPU %.2f s over %v: %.1f %% of one core, %.3f %% per publisher\n",
			r.CPU.Seconds(), r.Elapsed.Round(time.Millisecond), 100*s.CPUShare, 100*s.CPUShare/float64(s.Publishers))
	}
	groups := map[string][]int{}
	for _, p := range r.Publishers {
		var why string
		switch p.State {
		case "refused":
			why = "refused: " + p.Status.String()
		case "failed":
			why = "failed: " + p.Error
		case "dropped":
			why = "dropped: " + p.Error
			if p.Status != nil {
				why += " after " + p.Status.String()
			}
		default:
			continue
		}
		groups[why] = append(groups[why], p.Index)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %d (publishers %s)\n", k, len(groups[k]), indexList(groups[k]))
	}
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// indexList shows up to ten indices.
func indexList(ix []int) string {
	var b strings.Builder
	for i, x := range ix {
		if i == 10 {
			fmt.Fprintf(&b, ", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}
