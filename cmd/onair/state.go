package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/onairhq/onair/internal/atomicfile"
)

// state is what onair generates on first start and keeps in the data directory,
// so that a stream key pasted into OBS, or a token handed to a moderator, keeps
// working after a restart.
type state struct {
	DefaultChannel string `json:"default_channel"`
	DefaultKey     string `json:"default_key"`
	Secret         string `json:"secret"`
	AdminToken     string `json:"admin_token"`
}

const stateFile = "state.json"

// loadState reads the data directory's state, filling in and saving anything missing.
func loadState(dir string) (state, error) {
	st, _, err := openState(dir)
	return st, err
}

// readState reads the data directory's state as it is; ok is false when there is none.
func readState(dir string) (st state, ok bool, err error) {
	path := filepath.Join(dir, stateFile)
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, false, nil
	case err != nil:
		return st, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, false, fmt.Errorf("read %s: %w", path, err)
	}
	return st, true, nil
}

// openState is loadState that also reports whether the default stream key was
// generated just now, the one time onair shows it at start.
func openState(dir string) (st state, newKey bool, err error) {
	st, _, err = readState(dir)
	if err != nil {
		return st, false, err
	}
	before := st
	if st.DefaultChannel == "" {
		st.DefaultChannel = "main"
	}
	if st.DefaultKey == "" {
		st.DefaultKey = "sk_" + randomToken(18)
		newKey = true
	}
	if st.Secret == "" {
		st.Secret = randomToken(32)
	}
	if st.AdminToken == "" {
		st.AdminToken = "adm_" + randomToken(24)
	}
	if st == before {
		return st, false, nil
	}
	if err := saveState(dir, st); err != nil {
		return st, false, err
	}
	return st, newKey, nil
}

// saveState writes the state file whole or not at all: a full disk leaves the
// previous file (or none) and no partial temporary file.
func saveState(dir string, st state) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	return atomicfile.Write(filepath.Join(dir, stateFile), raw, 0o600)
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
