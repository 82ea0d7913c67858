package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// FLV tag types.
const (
	tagAudio  = 8
	tagVideo  = 9
	tagScript = 18
)

// Tag is one FLV tag: its type, its timestamp in milliseconds and its body.
type Tag struct {
	Type      byte
	Timestamp uint32
	Data      []byte
}

// maxTagSize bounds one tag's body; FLV's size field allows 16 MiB.
const maxTagSize = 1<<24 - 1

// ReadFLV reads every tag of an FLV stream. A truncated tag, a bad
// signature or a size field that disagrees with the tag is an error naming
// the byte offset.
func ReadFLV(r io.Reader) ([]Tag, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head [9]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("reading the FLV header: %w", err)
	}
	if string(head[:3]) != "FLV" {
		return nil, errors.New("not an FLV file (no \"FLV\" signature)")
	}
	dataOffset := binary.BigEndian.Uint32(head[5:9])
	if dataOffset < 9 || dataOffset > 1<<16 {
		return nil, fmt.Errorf("FLV header size %d is invalid", dataOffset)
	}
	if _, err := br.Discard(int(dataOffset) - 9); err != nil {
		return nil, fmt.Errorf("reading the FLV header: %w", err)
	}
	off := int64(dataOffset)
	var prev [4]byte
	if _, err := io.ReadFull(br, prev[:]); err != nil {
		return nil, fmt.Errorf("reading the first PreviousTagSize: %w", err)
	}
	off += 4
	var tags []Tag
	for {
		var h [11]byte
		n, err := io.ReadFull(br, h[:])
		if err == io.EOF {
			return tags, nil
		}
		if err != nil {
			return nil, fmt.Errorf("FLV tag header at byte %d truncated (%d of 11 bytes)", off, n)
		}
		if h[0]&0x20 != 0 {
			return nil, fmt.Errorf("FLV tag at byte %d is encrypted", off)
		}
		size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		ts := uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("FLV tag at byte %d truncated: its header says %d bytes", off, size)
		}
		if _, err := io.ReadFull(br, prev[:]); err != nil {
			return nil, fmt.Errorf("FLV tag at byte %d: PreviousTagSize missing", off)
		}
		if got := binary.BigEndian.Uint32(prev[:]); got != uint32(11+size) {
			return nil, fmt.Errorf("FLV tag at byte %d: PreviousTagSize %d, want %d", off, got, 11+size)
		}
		off += int64(11 + size + 4)
		tags = append(tags, Tag{Type: h[0] & 0x1f, Timestamp: ts, Data: data})
	}
}

// ReadFLVFile reads every tag of an FLV file.
func ReadFLVFile(path string) ([]Tag, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tags, err := ReadFLV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tags, nil
}

// isSequenceHeader reports whether a media tag carries decoder
// configuration rather than a frame: an AVC/HEVC configuration record, an
// Enhanced RTMP SequenceStart, or an AAC AudioSpecificConfig.
func isSequenceHeader(t Tag) bool {
	if len(t.Data) < 2 {
		return false
	}
	switch t.Type {
	case tagVideo:
		if t.Data[0]&0x80 != 0 { // Enhanced RTMP: packet type in the low nibble
			return t.Data[0]&0x0f == 0
		}
		codec := t.Data[0] & 0x0f
		return (codec == 7 || codec == 12) && t.Data[1] == 0
	case tagAudio:
		return t.Data[0]>>4 == 10 && t.Data[1] == 0
	}
	return false
}

// EncodeInput writes the benchmark's standard input with ffmpeg: dur of
// 720p30 H.264 (libx264 defaults, so B-frames; ~3 Mbit/s held near constant
// by its VBV; a keyframe every second) and 48 kHz AAC at 128 kbit/s, in FLV.
func EncodeInput(ctx context.Context, ffmpeg, path string, dur time.Duration) error {
	secs := fmt.Sprintf("%.3f", dur.Seconds())
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", secs,
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-b:v", "3M", "-minrate", "3M", "-maxrate", "3M", "-bufsize", "1.5M",
		"-x264-params", "nal-hrd=cbr:force-cfr=1",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "128k",
		"-f", "flv", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("encoding %s with %s: %w: %s", path, ffmpeg, err, out)
	}
	return nil
}
