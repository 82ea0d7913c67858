package moderation

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"

	"github.com/onairhq/onair/ingest"
)

// encodeAV1 encodes a clip with SVT-AV1 and splits it the way ingest
// delivers AV1 (OBUs without size fields, no temporal delimiters, the
// sequence header in the track); a temporal unit with a sequence header is
// a keyframe.
func encodeAV1(t *testing.T, pattern string) clip {
	t.Helper()
	needFFmpeg(t)
	if exec.Command("ffmpeg", "-hide_banner", "-h", "encoder=libsvtav1").Run() != nil {
		t.Skip("ffmpeg has no SVT-AV1 encoder")
	}
	out := filepath.Join(t.TempDir(), "clip.obu")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", pattern,
		"-c:v", "libsvtav1", "-preset", "12", "-g", "30", "-pix_fmt", "yuv420p", "-f", "obu", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var bs av1.Bitstream
	if err := bs.Unmarshal(data); err != nil {
		t.Fatal(err)
	}
	c := clip{track: ingest.VideoTrack{Codec: ingest.CodecAV1}, fps: 30}
	var cur *ingest.AccessUnit
	for _, obu := range bs {
		switch av1.OBUType(obu[0] >> 3 & 0x0f) {
		case av1.OBUTypeTemporalDelimiter:
			c.aus = append(c.aus, ingest.AccessUnit{Kind: ingest.KindVideo})
			cur = &c.aus[len(c.aus)-1]
			continue
		case av1.OBUTypeSequenceHeader:
			if c.track.SPS == nil {
				var sh av1.SequenceHeader
				if err := sh.Unmarshal(obu); err != nil {
					t.Fatal(err)
				}
				c.track.SPS, c.track.Width, c.track.Height = obu, sh.Width(), sh.Height()
			}
			cur.Key = true
		}
		cur.NALUs = append(cur.NALUs, obu)
	}
	for i := range c.aus {
		d := time.Duration(i) * time.Second / 30
		c.aus[i].DTS, c.aus[i].PTS = d, d
	}
	return c
}

// TestDecodeAV1: AV1 keyframes decode to JPEG through the same decoder,
// one image per sample, the colour of what was encoded.
func TestDecodeAV1(t *testing.T) {
	c := encodeAV1(t, "color=c=white:s=640x360:r=30:d=3")
	keys := keyframes(c)
	if len(keys) < 2 {
		t.Fatalf("%d keyframes in 3 s", len(keys))
	}
	d, err := StartDecoder(DecoderOptions{Codec: ingest.CodecAV1, Width: 320, Height: 180})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		img, err := d.Decode(ctx, annexB(&c.track, Sample{Frames: []ingest.AccessUnit{k}}))
		cancel()
		if err != nil {
			t.Fatalf("keyframe %d: %v", i, err)
		}
		if !bytes.HasPrefix(img, []byte{0xff, 0xd8}) {
			t.Fatalf("keyframe %d: not a JPEG", i)
		}
		im, err := (&Frame{JPEG: img}).Image()
		if err != nil {
			t.Fatal(err)
		}
		if l := meanLuma(im); l < 200 {
			t.Errorf("keyframe %d: mean luma %.0f, want white", i, l)
		}
		t.Logf("AV1 keyframe %d decoded in %v", i, time.Since(start).Round(time.Millisecond))
	}
}
