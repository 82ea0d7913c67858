package moderation

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/onairhq/onair/ingest"
)

// clip is a test stream split the way ingest delivers it: parameter sets in
// the track, access units without start codes.
type clip struct {
	track ingest.VideoTrack
	aus   []ingest.AccessUnit
	fps   int
}

func needFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
}

// encodeClip runs ffmpeg on a lavfi filter graph (one video output) and splits the result.
func encodeClip(t testing.TB, graph string, codec ingest.Codec, fps, gop int) clip {
	t.Helper()
	needFFmpeg(t)
	out := filepath.Join(t.TempDir(), "clip."+string(codec))
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph}
	switch codec {
	case "h264bf0":
		codec = ingest.CodecH264
		args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", strconv.Itoa(gop), "-f", "h264", out)
	case ingest.CodecH264:
		args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
			"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "h264", out)
	case ingest.CodecHEVC:
		args = append(args, "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
			"-x265-params", "log-level=error:keyint="+strconv.Itoa(gop)+":min-keyint="+strconv.Itoa(gop)+":scenecut=0:bframes=2",
			"-f", "hevc", out)
	}
	cmd := exec.Command("ffmpeg", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	c := splitAnnexB(codec, data)
	c.fps = fps
	frameSize(t, &c.track)
	for i := range c.aus {
		d := time.Duration(i) * time.Second / time.Duration(fps)
		c.aus[i].DTS, c.aus[i].PTS = d, d
	}
	if len(c.aus) == 0 || c.track.SPS == nil {
		t.Fatalf("no access units in %d bytes", len(data))
	}
	return c
}

// frameSize sets the track's size from its SPS, as ingest does.
func frameSize(t testing.TB, v *ingest.VideoTrack) {
	t.Helper()
	if v.Codec == ingest.CodecHEVC {
		var s h265.SPS
		if err := s.Unmarshal(v.SPS); err != nil {
			t.Fatal(err)
		}
		v.Width, v.Height = s.Width(), s.Height()
		return
	}
	var s h264.SPS
	if err := s.Unmarshal(v.SPS); err != nil {
		t.Fatal(err)
	}
	v.Width, v.Height = s.Width(), s.Height()
}

// splitAnnexB parses an Annex-B elementary stream into access units,
// moving parameter sets into the track as an RTMP publisher would.
func splitAnnexB(codec ingest.Codec, data []byte) clip {
	c := clip{track: ingest.VideoTrack{Codec: codec}}
	var nalus [][]byte
	for len(data) > 0 {
		i := bytes.Index(data, []byte{0, 0, 1})
		if i < 0 {
			break
		}
		data = data[i+3:]
		j := bytes.Index(data, []byte{0, 0, 1})
		var n []byte
		if j < 0 {
			n, data = data, nil
		} else {
			n, data = data[:j], data[j:]
		}
		n = bytes.TrimRight(n, "\x00")
		if len(n) > 0 {
			nalus = append(nalus, n)
		}
	}
	var cur *ingest.AccessUnit
	hasSlice := false
	flush := func() {
		if cur != nil && len(cur.NALUs) > 0 {
			c.aus = append(c.aus, *cur)
		}
		cur = &ingest.AccessUnit{Kind: ingest.KindVideo}
		hasSlice = false
	}
	flush()
	for _, n := range nalus {
		var typ int
		var slice, first, key, param, prefix bool
		if codec == ingest.CodecHEVC {
			typ = int(n[0]>>1) & 0x3f
			slice = typ < 32
			first = slice && len(n) > 2 && n[2]&0x80 != 0
			key = typ >= 16 && typ <= 21
			param = typ >= 32 && typ <= 34
			prefix = typ >= 32 && typ <= 40 && typ != 38
			switch typ {
			case 32:
				c.track.VPS = n
			case 33:
				c.track.SPS = n
			case 34:
				c.track.PPS = n
			}
		} else {
			typ = int(n[0] & 0x1f)
			slice = typ >= 1 && typ <= 5
			first = slice && len(n) > 1 && n[1]&0x80 != 0
			key = typ == 5
			param = typ == 7 || typ == 8
			prefix = typ >= 6 && typ <= 9
			switch typ {
			case 7:
				c.track.SPS = n
			case 8:
				c.track.PPS = n
			}
		}
		if hasSlice && (first || prefix) {
			flush()
		}
		if slice {
			hasSlice = true
		}
		if key {
			cur.Key = true
		}
		if !param {
			cur.NALUs = append(cur.NALUs, n)
		}
	}
	flush()
	return c
}

func keyframes(c clip) []ingest.AccessUnit {
	var out []ingest.AccessUnit
	for _, au := range c.aus {
		if au.Key {
			out = append(out, au)
		}
	}
	return out
}

func TestDecoderLatency(t *testing.T) {
	for _, codec := range []ingest.Codec{ingest.CodecH264, ingest.CodecHEVC} {
		t.Run(string(codec), func(t *testing.T) {
			c := encodeClip(t, "testsrc2=s=1280x720:r=30:d=4", codec, 30, 30)
			keys := keyframes(c)
			if len(keys) < 3 {
				t.Fatalf("%d keyframes", len(keys))
			}
			track, _, err := decoderTrack(&c.track)
			if err != nil {
				t.Fatal(err)
			}
			d, err := StartDecoder(DecoderOptions{Codec: codec, MaxWidth: 640})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var worst, total time.Duration
			for i, k := range keys {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				img, err := d.Decode(ctx, annexB(track, Sample{Frames: []ingest.AccessUnit{k}}))
				cancel()
				if err != nil {
					t.Fatalf("keyframe %d: %v", i, err)
				}
				el := time.Since(start)
				total += el
				worst = max(worst, el)
				if !bytes.HasPrefix(img, []byte{0xff, 0xd8}) || !bytes.HasSuffix(img, []byte{0xff, 0xd9}) {
					t.Fatalf("keyframe %d: not a JPEG", i)
				}
			}
			t.Logf("%s 720p keyframe -> 640w JPEG: %d frames, mean %v, worst %v", codec, len(keys), total/time.Duration(len(keys)), worst)
		})
	}
}
