package moderation

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// history keeps every recorded event in a file of JSON lines, so that the
// takedown and flag history outlives the process. Opening it reads the
// file, keeps the newest perChannel events of each channel and rewrites the
// file with those only, so it never grows past one run's events on top.
type history struct {
	mu sync.Mutex
	f  *os.File
}

// openHistory reads the events kept at path and opens it for appending.
func openHistory(path string, perChannel int) (*history, map[string][]Event, error) {
	events := map[string][]Event{}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Channel == "" {
				continue // a line cut by a crash
			}
			evs := append(events[ev.Channel], ev)
			if len(evs) > perChannel {
				evs = evs[len(evs)-perChannel:]
			}
			events[ev.Channel] = evs
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read moderation history: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("moderation history: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("moderation history: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, evs := range events {
		for _, ev := range evs {
			enc.Encode(ev)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("moderation history: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("moderation history: %w", err)
	}
	return &history{f: f}, events, nil
}

// add appends ev.
func (h *history) add(ev Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.f.Write(append(line, '\n'))
	return err
}

func (h *history) close() error { return h.f.Close() }
