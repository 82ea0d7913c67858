// Package testmedia encodes short test clips with real ffmpeg (lavfi
// sources) and demuxes them into ingest access units the way ingest delivers
// them: RTMP (FLV) millisecond DTS and composition times, tags parsed by
// ingest's own parsers. Tests of the media consumers share it.
package testmedia

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// Spec describes a clip. Zero values take the defaults given.
type Spec struct {
	Seconds   int    // default 4
	Video     bool   // testsrc2 through libx264 (defaults: B-frames)
	Audio     bool   // a sine through AAC
	Size      string // default "320x240"
	FPS       int    // default 30
	GOP       int    // frames between keyframes; default FPS (one a second)
	Bitrate   string // video bitrate, e.g. "3M"; default: libx264's CRF
	Pattern   string // lavfi video source; default "testsrc2"
	ExtraArgs []string
}

func (s Spec) withDefaults() Spec {
	if s.Seconds == 0 {
		s.Seconds = 4
	}
	if s.Size == "" {
		s.Size = "320x240"
	}
	if s.FPS == 0 {
		s.FPS = 30
	}
	if s.GOP == 0 {
		s.GOP = s.FPS
	}
	if s.Pattern == "" {
		s.Pattern = "testsrc2"
	}
	return s
}

// Clip is an encoded clip, demuxed.
type Clip struct {
	Tracks      ingest.Tracks
	Units       []ingest.AccessUnit
	VideoFrames int
	AudioFrames int
	FLV         string // path of the encoded FLV, shared by test runs (see Make)
}

// The clips a test binary has demuxed, by spec.
var (
	mu    sync.Mutex
	cache = map[string]*Clip{}
)

// NeedFFmpeg skips the test when ffmpeg or ffprobe is missing.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	for _, p := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (scripts/test installs it)", p)
		}
	}
}

// Make encodes (once per spec in a test binary) and demuxes a clip.
func Make(t testing.TB, s Spec) *Clip {
	t.Helper()
	NeedFFmpeg(t)
	s = s.withDefaults()
	key := fmt.Sprintf("%+v", s)
	mu.Lock()
	defer mu.Unlock()
	if c := cache[key]; c != nil {
		return c
	}
	// Encoded clips are kept under the system's temp directory, named by
	// their ffmpeg arguments: runs reuse them instead of leaving a new
	// directory behind each time.
	sum := sha256.Sum256([]byte(strings.Join(encodeArgs(s), "\x00")))
	out := filepath.Join(os.TempDir(), "onair-testmedia", hex.EncodeToString(sum[:8])+".flv")
	if _, err := os.Stat(out); err != nil {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		// Another test binary may encode the same clip: write aside, then rename.
		tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
		if err := Encode(tmp, s); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, out); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Demux(data)
	if err != nil {
		t.Fatalf("demux %s: %v", out, err)
	}
	c.FLV = out
	cache[key] = c
	return c
}

// Encode writes the clip s describes to out (FLV, as an RTMP publisher sends it).
func Encode(out string, s Spec) error {
	args := append(encodeArgs(s.withDefaults()), "-f", "flv", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// encodeArgs are ffmpeg's arguments for s, all but the output.
func encodeArgs(s Spec) []string {
	args := []string{"-hide_banner", "-loglevel", "error", "-y"}
	if s.Video {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("%s=size=%s:rate=%d", s.Pattern, s.Size, s.FPS))
	}
	if s.Audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100")
	}
	args = append(args, "-t", fmt.Sprint(s.Seconds))
	if s.Video {
		args = append(args, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", fmt.Sprint(s.GOP),
			"-keyint_min", fmt.Sprint(s.GOP), "-sc_threshold", "0")
		if s.Bitrate != "" {
			args = append(args, "-b:v", s.Bitrate, "-maxrate", s.Bitrate, "-bufsize", s.Bitrate)
		}
	}
	if s.Audio {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	return append(args, s.ExtraArgs...)
}

// Demux reads an FLV file's tags with ingest's tag parsers.
func Demux(b []byte) (*Clip, error) {
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, fmt.Errorf("not FLV")
	}
	c := &Clip{}
	lengthSize := 4
	p := int(binary.BigEndian.Uint32(b[5:9])) + 4
	for p+11 <= len(b) {
		typ := b[p] & 0x1f
		size := int(b[p+1])<<16 | int(b[p+2])<<8 | int(b[p+3])
		ts := uint32(b[p+4])<<16 | uint32(b[p+5])<<8 | uint32(b[p+6]) | uint32(b[p+7])<<24
		if p+11+size > len(b) {
			break
		}
		data := b[p+11 : p+11+size]
		p += 11 + size + 4
		dts := time.Duration(ts) * time.Millisecond
		switch typ {
		case 9:
			tag, err := ingest.ParseVideoTag(data)
			if err != nil {
				return nil, err
			}
			switch tag.Type {
			case ingest.TagSequenceHeader:
				c.Tracks.Video = tag.Config
				if tag.LengthSize != 0 {
					lengthSize = tag.LengthSize
				}
			case ingest.TagFrame:
				nalus, err := ingest.SplitNALUs(tag.Payload, lengthSize)
				if err != nil {
					return nil, err
				}
				c.Units = append(c.Units, ingest.AccessUnit{Kind: ingest.KindVideo, DTS: dts,
					PTS: dts + time.Duration(tag.CTS)*time.Millisecond, Key: ingest.IsKeyFrame(tag.Codec, nalus), NALUs: nalus})
				c.VideoFrames++
			}
		case 8:
			tag, err := ingest.ParseAudioTag(data)
			if err != nil {
				return nil, err
			}
			switch tag.Type {
			case ingest.TagSequenceHeader:
				c.Tracks.Audio = tag.Config
			case ingest.TagFrame:
				c.Units = append(c.Units, ingest.AccessUnit{Kind: ingest.KindAudio, DTS: dts, PTS: dts, Frame: tag.Payload})
				c.AudioFrames++
			}
		}
	}
	if c.Tracks.Video == nil && c.Tracks.Audio == nil {
		return nil, fmt.Errorf("no sequence headers")
	}
	return c, nil
}

// Feed pushes the clip's units into a new feed for b (all at once, or at
// real-time pace when paced) and ends it, from a goroutine that stops when
// stop is closed. Received is set to the time each unit is pushed.
func (c *Clip) Feed(paced bool, stop <-chan struct{}) *ingest.Feed {
	feed := ingest.NewFeed(len(c.Units)+1, c.Tracks)
	go func() {
		start := time.Now()
		for _, au := range c.Units {
			if paced {
				if d := time.Until(start.Add(au.DTS)); d > 0 {
					select {
					case <-time.After(d):
					case <-stop:
						return
					}
				}
			}
			au.Received = time.Now()
			feed.Push(au)
		}
		feed.End(ingest.EndStopped, "")
	}()
	return feed
}

// Shifted returns the clip's units with every timestamp moved by d.
func (c *Clip) Shifted(d time.Duration) []ingest.AccessUnit {
	out := make([]ingest.AccessUnit, len(c.Units))
	for i, au := range c.Units {
		au.DTS += d
		au.PTS += d
		out[i] = au
	}
	return out
}
