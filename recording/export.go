package recording

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Find returns the directory and description of recording id under root
// (a Recorder's Dir), whichever channel it belongs to.
func Find(root, id string) (string, Meta, error) {
	if !ValidID(id) {
		return "", Meta{}, fmt.Errorf("%q is not a recording id (like 20261201T100000Z-0123abcd)", id)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*", id))
	for _, dir := range dirs {
		if m, err := readMeta(dir); err == nil {
			return dir, m, nil
		}
	}
	return "", Meta{}, fmt.Errorf("recording %s: %w under %s", id, ErrNotFound, root)
}

// Export writes recording id as one progressive MP4 (moov first, so it
// plays while it downloads) at out, copying the media as recorded (no
// second encode) with ffmpeg.
func Export(ctx context.Context, root, id, out, ffmpeg string) (Meta, error) {
	dir, m, err := Find(root, id)
	if err != nil {
		return m, err
	}
	if m.State == StateRecording {
		return m, fmt.Errorf("recording %s is still being recorded: export it once its broadcast ended", id)
	}
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-allowed_extensions", "ALL", "-i", filepath.Join(dir, playlistFile),
		"-map", "0", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(out)
		return m, fmt.Errorf("export %s with %s: %w: %s", id, ffmpeg, err, strings.TrimSpace(stderr.String()))
	}
	return m, nil
}
