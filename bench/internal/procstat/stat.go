package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of times in /proc/PID/stat: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// statFields returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces); f[0] is field 3, state.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// CPUTime is a process's user+system CPU time and, with reaped, that of
// its children which have exited and been waited for (cutime+cstime).
func CPUTime(pid int, reaped bool) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	last := 12 // utime (field 14), stime (15)
	if reaped {
		last = 14 // cutime (16), cstime (17)
	}
	var ticks int64
	for _, s := range f[11 : last+1] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/%d/stat times", pid)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// RSS is a process's resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// Descendants returns every process below pid, from the kernel's
// /proc/PID/task/TID/children lists (no scan of every process).
func Descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}

// Usage is a snapshot of a group of processes.
type Usage struct {
	CPU time.Duration // user+system time so far
	RSS int64         // bytes resident now
}

// Sample sums CPU time (with reaped children's, see CPUTime) and RSS over
// pids; processes that have vanished are skipped.
func Sample(pids []int, reaped bool) Usage {
	var u Usage
	for _, p := range pids {
		if c, err := CPUTime(p, reaped); err == nil {
			u.CPU += c
		}
		if r, err := RSS(p); err == nil {
			u.RSS += r
		}
	}
	return u
}

// SampleTree samples a process and its descendants, reaped children's CPU
// time included: everything the process has cost.
func SampleTree(pid int) Usage {
	return Sample(append([]int{pid}, Descendants(pid)...), true)
}

// DirBytes is the memory the files under dir take on tmpfs (their
// allocated blocks).
func DirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
