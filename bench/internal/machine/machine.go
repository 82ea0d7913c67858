// Package machine describes the computer a benchmark runs on, for the
// report it prints.
package machine

import (
	"os"
	"os/exec"
	"strings"
)

// Description is what a benchmark report says about the machine.
type Description struct {
	Nproc  string // online CPUs (nproc)
	CPU    string // model, and hypervisor if any
	Mem    string // total and available RAM
	Kernel string // uname -sr
	FFmpeg string // ffmpeg's version
	// LoadBefore is the load average when Describe ran; LoadAfter is for
	// the caller to fill in at the end.
	LoadBefore, LoadAfter string
}

// Describe reads the machine's description.
func Describe() Description {
	m := Description{
		Nproc:      Output("nproc"),
		Kernel:     Output("uname", "-sr"),
		FFmpeg:     strings.TrimPrefix(strings.Fields(Output("ffmpeg", "-version") + " ? ?")[2], "version "),
		LoadBefore: LoadAverage(),
	}
	if out, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if lscpu := Output("sh", "-c", "lscpu | sed -n 's/^Model name: *//p;s/^Hypervisor vendor: *//p' | paste -sd ' '"); lscpu != "?" && lscpu != "" {
		m.CPU = lscpu
	}
	if free := Output("sh", "-c", "free -h | awk '/^Mem:/ {print $2 \" RAM, \" $7 \" available\"}'"); free != "?" {
		m.Mem = free
	}
	return m
}

// LoadAverage is the 1, 5 and 15 minute load averages, or "?".
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Output runs a command and returns the first line of its output, or "?"
// when it failed without any.
func Output(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil && s == "" {
		return "?"
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
