package moderation

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onairhq/onair/internal/metricstest"
)

// children lists our child processes whose command name contains name
// (any child for "").
func children(t testing.TB, name string) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "("+name) {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ffmpegChildren lists our ffmpeg child processes.
func ffmpegChildren(t testing.TB) []int { return children(t, "ffmpeg") }

// metricValue returns the value of one sample line of m's metrics ("" if absent).
func metricValue(m *Moderator, sample string) string {
	var sb strings.Builder
	metricstest.Write(&sb, m)
	for _, l := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v
		}
	}
	return ""
}

// allowAll is a screener that lets every frame pass.
type allowAll struct{}

func (allowAll) Name() string { return "allow-all" }
func (allowAll) Screen(context.Context, *Frame) (Verdict, error) {
	return Verdict{Action: Allow}, nil
}

// fakeFFmpeg writes an executable script standing in for ffmpeg.
func fakeFFmpeg(t testing.TB, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
