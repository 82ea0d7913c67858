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
	var st state
	path := filepath.Join(dir, stateFile)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &st); err != nil {
			return st, fmt.Errorf("read %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	before := st
	if st.DefaultChannel == "" {
		st.DefaultChannel = "main"
	}
	if st.DefaultKey == "" {
		st.DefaultKey = "sk_" + randomToken(18)
	}
	if st.Secret == "" {
		st.Secret = randomToken(32)
	}
	if st.AdminToken == "" {
		st.AdminToken = "adm_" + randomToken(24)
	}
	if st == before {
		return st, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return st, fmt.Errorf("create data directory: %w", err)
	}
	raw, _ = json.MarshalIndent(st, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return st, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return st, fmt.Errorf("save %s: %w", path, err)
	}
	return st, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
