package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
	"github.com/sirupsen/logrus"
	"github.com/yutopp/go-rtmp"
	rtmpmsg "github.com/yutopp/go-rtmp/message"
)

// makeInput encodes the benchmark's input: 720p30 H.264 at 3 Mbit/s with
// libx264's default settings (preset medium, B-frames) but a keyframe every
// 30 frames, plus 48 kHz AAC, in FLV.
func makeInput(ctx context.Context, path string, dur time.Duration) error {
	args := []string{"-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", fmt.Sprint(dur.Seconds()),
		"-c:v", "libx264", "-b:v", "3M", "-maxrate", "3M", "-bufsize", "3M",
		"-g", "30", "-keyint_min", "30",
		"-c:a", "aac", "-b:a", "128k",
		"-f", "flv", path}
	p, err := startProc("ffmpeg", path+".log", args...)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			return fmt.Errorf("encoding the input (see %s.log): %w", path, err)
		}
		return nil
	case <-ctx.Done():
		p.Stop()
		return ctx.Err()
	}
}

// startFFmpegPublisher publishes the input in a loop in real time, as a
// broadcaster would: ffmpeg -re -stream_loop -1 -c copy.
func startFFmpegPublisher(input, to, logPath string) (*procstat.Proc, error) {
	return startProc("ffmpeg", logPath, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-stream_loop", "-1", "-i", input, "-c", "copy", "-f", "flv", to)
}

// tag is one FLV tag.
type tag struct {
	typ  byte // 8 audio, 9 video, 18 script data
	ts   time.Duration
	data []byte
}

func (t tag) isVideoFrame() bool { return t.typ == 9 && len(t.data) > 5 && t.data[1] == 1 }
func (t tag) isKey() bool        { return t.isVideoFrame() && t.data[0]>>4 == 1 }

// cts is an AVC frame's composition time offset.
func (t tag) cts() time.Duration {
	v := int32(uint32(t.data[2])<<16|uint32(t.data[3])<<8|uint32(t.data[4])) << 8 >> 8
	return time.Duration(v) * time.Millisecond
}

// readFLV reads every tag of an FLV file.
func readFLV(path string) ([]tag, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, fmt.Errorf("%s is not FLV", path)
	}
	off := int(binary.BigEndian.Uint32(b[5:9])) + 4
	var tags []tag
	for off+11 <= len(b) {
		h := b[off : off+11]
		size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		ts := int64(h[7])<<24 | int64(h[4])<<16 | int64(h[5])<<8 | int64(h[6])
		if off+11+size > len(b) {
			break
		}
		tags = append(tags, tag{typ: h[0], ts: time.Duration(ts) * time.Millisecond, data: b[off+11 : off+11+size]})
		off += 11 + size + 4
	}
	return tags, nil
}

// sentFrame is when the publisher handed a video frame to the socket.
type sentFrame struct {
	dts, pts time.Duration
	key      bool
	at       time.Time
}

// publishTimed publishes tags (one pass) in real time with its own RTMP client
// and records when each video frame was written. It stops at ctx's end.
func publishTimed(ctx context.Context, to string, tags []tag) (start time.Time, frames []sentFrame, err error) {
	u, err := url.Parse(to)
	if err != nil {
		return start, nil, err
	}
	app, name, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	log := logrus.New()
	log.SetOutput(io.Discard)
	start = time.Now()
	cc, err := rtmp.Dial("rtmp", u.Host, &rtmp.ConnConfig{Logger: log})
	if err != nil {
		return start, nil, fmt.Errorf("dialing %s: %w", u.Host, err)
	}
	defer cc.Close()
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	defer stop()
	if err := cc.Connect(&rtmpmsg.NetConnectionConnect{Command: rtmpmsg.NetConnectionConnectCommand{
		App: app, Type: "nonprivate", FlashVer: "FMLE/3.0", TCURL: fmt.Sprintf("rtmp://%s/%s", u.Host, app),
	}}); err != nil {
		return start, nil, fmt.Errorf("RTMP connect: %w", err)
	}
	st, err := cc.CreateStream(nil, 65536)
	if err != nil {
		return start, nil, fmt.Errorf("RTMP createStream: %w", err)
	}
	if err := st.Publish(&rtmpmsg.NetStreamPublish{PublishingName: name, PublishingType: "live"}); err != nil {
		return start, nil, fmt.Errorf("RTMP publish: %w", err)
	}
	t0 := time.Now()
	for _, t := range tags {
		if d := time.Until(t0.Add(t.ts)); d > 0 {
			select {
			case <-ctx.Done():
				return start, frames, nil
			case <-time.After(d):
			}
		}
		var msg rtmpmsg.Message
		switch t.typ {
		case 8:
			msg = &rtmpmsg.AudioMessage{Payload: bytes.NewReader(t.data)}
		case 9:
			msg = &rtmpmsg.VideoMessage{Payload: bytes.NewReader(t.data)}
		default:
			continue
		}
		csid := 4
		if t.typ == 9 {
			csid = 6
		}
		if err := st.Write(csid, uint32(t.ts/time.Millisecond), msg); err != nil {
			if ctx.Err() != nil {
				return start, frames, nil
			}
			return start, frames, fmt.Errorf("writing a tag at %v: %w", t.ts, err)
		}
		if t.isVideoFrame() {
			frames = append(frames, sentFrame{dts: t.ts, pts: t.ts + t.cts(), key: t.isKey(), at: time.Now()})
		}
	}
	return start, frames, nil
}
