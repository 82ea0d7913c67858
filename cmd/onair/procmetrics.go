package main

import (
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/onairhq/onair/internal/promtext"
)

// writeProcessMetrics writes the process's goroutines, heap, open files and
// resident memory under the names Prometheus's Go client uses, so leaks show
// on a dashboard (and the fault tests can watch them return to baseline).
func writeProcessMetrics(w io.Writer) {
	p := promtext.NewWriter(w)
	p.Gauge("go_goroutines", "Number of goroutines that currently exist.", runtime.NumGoroutine())
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heap)
	if heap[0].Value.Kind() == metrics.KindUint64 {
		p.Gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", heap[0].Value.Uint64())
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.Gauge("process_open_fds", "Number of open file descriptors.", len(fds))
	}
	if rss, ok := residentBytes(); ok {
		p.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss)
	}
}

// residentBytes reads the resident set size from /proc/self/statm (Linux).
func residentBytes() (int64, bool) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
