package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/onairhq/onair/internal/atomicfile"
)

// FileStore keeps the catalog in one JSON file, rewritten whole on every
// change (a change is rare; a crash leaves the previous file).
type FileStore struct {
	path string
	mu   sync.Mutex
}

// fileContents is the file's shape.
type fileContents struct {
	Seeded   bool      `json:"seeded"`
	Channels []Channel `json:"channels"`
}

// NewFileStore returns a store kept at path (created on the first change).
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

func (s *FileStore) read() (fileContents, error) {
	var c fileContents
	raw, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return c, fmt.Errorf("read %s: %w", s.path, err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("read %s: %w", s.path, err)
	}
	return c, nil
}

func (s *FileStore) write(c fileContents) error {
	sort.Slice(c.Channels, func(i, j int) bool { return c.Channels[i].Name < c.Channels[j].Name })
	raw, _ := json.MarshalIndent(c, "", "  ")
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("save %s: %w", s.path, err)
	}
	return atomicfile.Write(s.path, raw, 0o600)
}

// List implements Store.
func (s *FileStore) List(ctx context.Context) ([]Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	sort.Slice(c.Channels, func(i, j int) bool { return c.Channels[i].Name < c.Channels[j].Name })
	return c.Channels, err
}

// Update implements Store.
func (s *FileStore) Update(ctx context.Context, name string, fn func(*Channel) (*Channel, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	if err != nil {
		return err
	}
	i := -1
	var old *Channel
	for j := range c.Channels {
		if c.Channels[j].Name == name {
			i, old = j, &c.Channels[j]
		}
	}
	neu, err := fn(old)
	switch {
	case err != nil:
		return err
	case neu == nil && i >= 0:
		c.Channels = append(c.Channels[:i], c.Channels[i+1:]...)
	case neu != nil && i >= 0:
		c.Channels[i] = *neu
	case neu != nil:
		c.Channels = append(c.Channels, *neu)
	}
	return s.write(c)
}

// Seeded reports whether a default channel was ever put in the file (Seed).
func (s *FileStore) Seeded() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	return c.Seeded, err
}

// Seed implements Store.
func (s *FileStore) Seed(ctx context.Context, ch Channel) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	if err != nil || c.Seeded {
		return err
	}
	c.Seeded = true
	if !containsChannel(c.Channels, ch.Name) {
		c.Channels = append(c.Channels, ch)
	}
	return s.write(c)
}

func containsChannel(cs []Channel, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}
