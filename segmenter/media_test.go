package segmenter

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// clip is short encoded media, demuxed into access units the way ingest
// delivers them: RTMP (FLV) millisecond DTS and composition times.
type clip struct {
	tracks      ingest.Tracks
	aus         []ingest.AccessUnit
	videoFrames int
	audioFrames int
}

type clipKind int

const (
	clipAV clipKind = iota
	clipVideo
	clipAudio
)

var (
	clipMu    sync.Mutex
	clipCache = map[string]*clip{}
)

func needFFmpeg(t testing.TB) {
	t.Helper()
	for _, p := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
}

// makeClip encodes seconds of testsrc2 (libx264 defaults, so B-frames, one
// keyframe per second) and/or a sine (AAC) into FLV and demuxes it.
func makeClip(t testing.TB, k clipKind, seconds int) *clip {
	t.Helper()
	needFFmpeg(t)
	key := fmt.Sprintf("%d-%d", k, seconds)
	clipMu.Lock()
	defer clipMu.Unlock()
	if c := clipCache[key]; c != nil {
		return c
	}
	dir, err := os.MkdirTemp("", "onair-segmenter-clip")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "clip.flv")
	dur := fmt.Sprint(seconds)
	args := []string{"-hide_banner", "-loglevel", "error", "-y"}
	if k != clipAudio {
		args = append(args, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30")
	}
	if k != clipVideo {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100")
	}
	args = append(args, "-t", dur)
	if k != clipAudio {
		args = append(args, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30")
	}
	if k != clipVideo {
		args = append(args, "-c:a", "aac", "-b:a", "64k")
	}
	args = append(args, "-f", "flv", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseFLV(data)
	if err != nil {
		t.Fatalf("parsing FLV: %v", err)
	}
	clipCache[key] = c
	return c
}

// parseFLV is a minimal FLV demuxer for H.264 + AAC, enough for test media.
func parseFLV(b []byte) (*clip, error) {
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, fmt.Errorf("not FLV")
	}
	c := &clip{}
	p := int(binary.BigEndian.Uint32(b[5:9])) + 4
	for p+11 <= len(b) {
		typ := b[p] & 0x1f
		size := int(b[p+1])<<16 | int(b[p+2])<<8 | int(b[p+3])
		ts := int64(b[p+4])<<16 | int64(b[p+5])<<8 | int64(b[p+6]) | int64(b[p+7])<<24
		data := b[p+11 : min(p+11+size, len(b))]
		p += 11 + size + 4
		dts := time.Duration(ts) * time.Millisecond
		switch typ {
		case 9: // video
			if len(data) < 5 || data[0]&0x0f != 7 {
				continue
			}
			cts := int32(uint32(data[2])<<16|uint32(data[3])<<8|uint32(data[4])) << 8 >> 8
			body := data[5:]
			switch data[1] {
			case 0:
				sps, pps, err := parseAVCC(body)
				if err != nil {
					return nil, err
				}
				c.tracks.Video = &ingest.VideoTrack{Codec: ingest.CodecH264, SPS: sps, PPS: pps, Width: 320, Height: 240}
			case 1:
				var nalus [][]byte
				for len(body) >= 4 {
					n := int(binary.BigEndian.Uint32(body))
					if 4+n > len(body) {
						return nil, fmt.Errorf("truncated NALU")
					}
					nalus = append(nalus, body[4:4+n])
					body = body[4+n:]
				}
				c.aus = append(c.aus, ingest.AccessUnit{
					Kind: ingest.KindVideo, DTS: dts, PTS: dts + time.Duration(cts)*time.Millisecond,
					Key: data[0]>>4 == 1, NALUs: nalus,
				})
				c.videoFrames++
			}
		case 8: // audio
			if len(data) < 2 || data[0]>>4 != 10 {
				continue
			}
			if data[1] == 0 {
				c.tracks.Audio = &ingest.AudioTrack{Codec: ingest.CodecAAC, Config: data[2:], SampleRate: 44100, Channels: 1}
				continue
			}
			c.aus = append(c.aus, ingest.AccessUnit{Kind: ingest.KindAudio, DTS: dts, PTS: dts, Frame: data[2:]})
			c.audioFrames++
		}
	}
	return c, nil
}

func parseAVCC(b []byte) (sps, pps []byte, err error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("short AVC config")
	}
	n := int(binary.BigEndian.Uint16(b[6:8]))
	if len(b) < 8+n+3 {
		return nil, nil, fmt.Errorf("short SPS")
	}
	sps = b[8 : 8+n]
	r := b[8+n:]
	m := int(binary.BigEndian.Uint16(r[1:3]))
	if len(r) < 3+m {
		return nil, nil, fmt.Errorf("short PPS")
	}
	return sps, r[3 : 3+m], nil
}

// publish feeds c into seg as one broadcast, at real-time pace when paced,
// and returns a channel closed when Consume has returned.
func publish(t testing.TB, seg *Segmenter, channel string, c *clip, paced bool) (done chan struct{}, b *ingest.Broadcast) {
	t.Helper()
	b = &ingest.Broadcast{ID: channel + "-" + fmt.Sprint(time.Now().UnixNano()), Channel: channel, Tracks: c.tracks, Started: time.Now()}
	feed := ingest.NewFeed(len(c.aus)+1, c.tracks)
	done = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		defer close(done)
		seg.Consume(ctx, b, feed)
	}()
	go func() {
		start := time.Now()
		for _, au := range c.aus {
			if paced {
				if d := time.Until(start.Add(au.DTS)); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
			}
			au.Received = time.Now()
			feed.Push(au)
		}
		feed.End(ingest.EndStopped, "")
	}()
	return done, b
}

// publishStalled feeds c and then neither ends the feed nor sends more, like a
// publisher that dropped and has not come back yet.
func publishStalled(t testing.TB, seg *Segmenter, channel string, c *clip) (chan struct{}, *ingest.Broadcast) {
	t.Helper()
	b := &ingest.Broadcast{ID: channel + "-stalled", Channel: channel, Tracks: c.tracks, Started: time.Now()}
	feed := ingest.NewFeed(len(c.aus)+1, c.tracks)
	for _, au := range c.aus {
		feed.Push(au)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		seg.Consume(ctx, b, feed)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return done, b
}
