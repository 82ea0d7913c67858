package moderation

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HashList is a Screener that blocks frames whose perceptual hash is within
// a Hamming distance of a hash in a blocklist file. The file is re-read when
// its modification time or size changes, checked at most once per Poll.
//
// The file holds one hash per line as 16 hex digits (an optional 0x prefix),
// optionally followed by a label that becomes part of the block reason.
// Blank lines and text after '#' are ignored.
type HashList struct {
	path     string
	distance int
	poll     time.Duration
	now      func() time.Time

	mu      sync.Mutex
	entries []hashEntry
	modTime time.Time
	size    int64
	checked time.Time
	loadErr error
}

type hashEntry struct {
	hash  uint64
	label string
}

// NewHashList loads the blocklist at path. Frames within distance bits of an
// entry are blocked; poll is how often to look for changes (0: 3 s).
func NewHashList(path string, distance int, poll time.Duration) (*HashList, error) {
	if poll <= 0 {
		poll = 3 * time.Second
	}
	l := &HashList{path: path, distance: distance, poll: poll, now: time.Now}
	if err := l.reload(true); err != nil {
		return nil, err
	}
	return l, nil
}

// Name implements Screener.
func (l *HashList) Name() string { return "hashlist" }

// Len returns the number of hashes in the list.
func (l *HashList) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Screen implements Screener.
func (l *HashList) Screen(ctx context.Context, f *Frame) (Verdict, error) {
	l.mu.Lock()
	if l.now().Sub(l.checked) >= l.poll {
		l.reload(false) // on error the previous list stays in force
	}
	entries := l.entries
	l.mu.Unlock()
	if len(entries) == 0 {
		return Verdict{Action: Allow, Screener: l.Name()}, nil
	}
	img, err := f.Image()
	if err != nil {
		return Verdict{}, err
	}
	h := HashImage(img)
	best, bestAt := 65, -1
	for i, e := range entries {
		if d := Distance(h, e.hash); d < best {
			best, bestAt = d, i
		}
	}
	if best <= l.distance {
		reason := "matches a blocklisted image"
		if lbl := entries[bestAt].label; lbl != "" {
			reason += " (" + lbl + ")"
		}
		return Verdict{Action: Block, Reason: reason, Screener: l.Name()}, nil
	}
	return Verdict{Action: Allow, Screener: l.Name()}, nil
}

// reload re-reads the file if it changed; l.mu is held unless initial.
func (l *HashList) reload(initial bool) error {
	l.checked = l.now()
	st, err := os.Stat(l.path)
	if err != nil {
		l.loadErr = fmt.Errorf("reading hash blocklist: %w", err)
		return l.loadErr
	}
	if !initial && st.ModTime().Equal(l.modTime) && st.Size() == l.size {
		return nil
	}
	f, err := os.Open(l.path)
	if err != nil {
		l.loadErr = fmt.Errorf("reading hash blocklist: %w", err)
		return l.loadErr
	}
	defer f.Close()
	entries, err := parseHashList(f)
	if err != nil {
		l.loadErr = fmt.Errorf("reading hash blocklist %s: %w", l.path, err)
		return l.loadErr
	}
	l.entries, l.modTime, l.size, l.loadErr = entries, st.ModTime(), st.Size(), nil
	return nil
}

// LoadError returns the last error reading the file, or nil.
func (l *HashList) LoadError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loadErr
}

func parseHashList(r io.Reader) ([]hashEntry, error) {
	var out []hashEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		hex := strings.TrimPrefix(strings.ToLower(fields[0]), "0x")
		h, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || len(hex) > 16 {
			return nil, fmt.Errorf("line %d: %q is not a 64-bit hex hash", n, fields[0])
		}
		out = append(out, hashEntry{hash: h, label: strings.Join(fields[1:], " ")})
	}
	return out, sc.Err()
}
