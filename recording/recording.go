// Package recording writes broadcasts to disk as they are packaged (the
// fMP4 parts the segmenter makes, no second encode), one directory per
// broadcast with an HLS playlist that is an EVENT playlist while the
// broadcast is live and a VOD playlist once it ends; it keeps them within an
// age and a size per channel, and lists them for replays.
//
// A recording directory holds init.mp4, one file per segment (parts are
// appended as they come), parts.log (one line per part written, so a crash
// loses at most the part being written), index.m3u8, meta.json and
// thumbnail.jpg (a picture from its first seconds, when one could be made).
package recording

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// State is where a recording stands.
type State string

// Recording states.
const (
	StateRecording State = "recording" // its broadcast is live
	StateComplete  State = "complete"  // ended; the playlist is final
	StateHidden    State = "hidden"    // its broadcast was taken down: kept for review, not served
)

// Meta describes one recording (meta.json).
type Meta struct {
	ID          string        `json:"id"`
	Channel     string        `json:"channel"`
	BroadcastID string        `json:"broadcast_id"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Size        int64         `json:"size"`
	Segments    int           `json:"segments"`
	State       State         `json:"state"`
	// Stopped says why recording stopped before the broadcast ended (a full disk, say).
	Stopped string `json:"stopped,omitempty"`
	// Thumbnail says the recording has a thumbnail.jpg.
	Thumbnail bool `json:"-"`
}

var idRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// ValidID reports whether id can name a recording (it becomes a directory name).
func ValidID(id string) bool { return idRE.MatchString(id) }

// newID names a recording by its start, so that names sort by age.
func newID(start time.Time, broadcastID string) string {
	tail := broadcastID
	for len(tail) < 8 {
		tail += "0"
	}
	return start.UTC().Format("20060102T150405Z") + "-" + tail[:8]
}

const (
	metaFile      = "meta.json"
	playlistFile  = "index.m3u8"
	initFile      = "init.mp4"
	partsLog      = "parts.log"
	thumbnailFile = "thumbnail.jpg"
)

func segmentFile(i int) string { return fmt.Sprintf("%06d.m4s", i) }

func readMeta(dir string) (Meta, error) {
	var m Meta
	raw, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("read %s: %w", filepath.Join(dir, metaFile), err)
	}
	if !ValidID(m.ID) {
		return m, fmt.Errorf("read %s: bad id %q", filepath.Join(dir, metaFile), m.ID)
	}
	_, err = os.Stat(filepath.Join(dir, thumbnailFile))
	m.Thumbnail = err == nil
	return m, nil
}

// writeFileAtomic replaces path with data whole or not at all. Unlike
// internal/atomicfile it does not sync: it runs once a segment for every
// recorded stream, and after a crash the recording is rebuilt from parts.log.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func writeMeta(dir string, m Meta) error {
	raw, _ := json.MarshalIndent(m, "", "  ")
	return writeFileAtomic(filepath.Join(dir, metaFile), raw)
}

// ErrNotFound is returned for a recording that does not exist (or is hidden, where served).
var ErrNotFound = errors.New("no such recording")
