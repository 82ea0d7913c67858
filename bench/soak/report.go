package main

import (
	"fmt"
	"strings"
	"time"
)

// sample is one reading of the onair process and of the load since the last one.
type sample struct {
	at         time.Duration
	goroutines int
	heap       int64 // after a forced collection
	rss        int64
	fds        int
	children   int
	load       loadRates
}

const tableHeader = "| time | goroutines | heap (live) MiB | RSS MiB | fds | children | publishes | segments/s | HLS Mbit/s | chat deliveries/s | errors HLS / chat |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|"

func (s sample) row() string {
	return fmt.Sprintf("| %s | %d | %.1f | %.1f | %d | %d | %d | %.1f | %.1f | %.0f | %d / %d |",
		s.at.Round(time.Second), s.goroutines, mib(s.heap), mib(s.rss), s.fds, s.children,
		s.load.publishes, s.load.segPerSec, s.load.mbitPerSec, s.load.chatRecvPerSec, s.load.hlsErr, s.load.chatErr)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// verdict compares the mean of each figure over the run's second quarter
// (after warm-up) with its last quarter, prints the comparison and reports
// whether every figure stayed within limit.
func verdict(samples []sample, limit float64) bool {
	n := len(samples)
	if n < 4 {
		fmt.Printf("too few samples (%d) for a verdict; run longer or sample more often\n", n)
		return false
	}
	q2, q4 := samples[n/4:n/2], samples[3*n/4:]
	mean := func(ss []sample, f func(sample) float64) float64 {
		var sum float64
		for _, s := range ss {
			sum += f(s)
		}
		return sum / float64(len(ss))
	}
	figures := []struct {
		name  string
		f     func(sample) float64
		slack float64 // absolute growth always allowed (noise of a few goroutines or descriptors)
	}{
		{"goroutines", func(s sample) float64 { return float64(s.goroutines) }, 20},
		{"heap MiB", func(s sample) float64 { return mib(s.heap) }, 4},
		{"RSS MiB", func(s sample) float64 { return mib(s.rss) }, 16},
		{"fds", func(s sample) float64 { return float64(s.fds) }, 20},
	}
	ok := true
	var parts []string
	for _, fg := range figures {
		a, b := mean(q2, fg.f), mean(q4, fg.f)
		grew := b > a*(1+limit)+fg.slack
		mark := "flat"
		if grew {
			mark, ok = "GREW", false
		}
		parts = append(parts, fmt.Sprintf("%s %.1f → %.1f (%s)", fg.name, a, b, mark))
	}
	fmt.Printf("second quarter → last quarter (means): %s\n", strings.Join(parts, "; "))
	if ok {
		fmt.Println("verdict: flat")
	} else {
		fmt.Printf("verdict: NOT FLAT (growth over %.0f %% plus slack)\n", limit*100)
	}
	return ok
}
