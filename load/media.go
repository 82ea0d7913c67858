package load

import (
	"errors"
	"fmt"
	"time"
)

// Media is an FLV recording prepared for replay by any number of
// publishers: every message is chunked once, for one chunk size; only its
// 12-byte header (timestamp, stream ID) is written per publisher and loop.
type Media struct {
	chunkSize int
	// start is sent once after the publish is confirmed: @setDataFrame and
	// the sequence headers found before the first frame.
	start []prepared
	// loop is replayed over and over; loop k adds k × loopDur to each
	// timestamp, so timestamps keep rising across loops.
	loop    []prepared
	loopDur uint32 // ms
	bytes   int64  // payload bytes of one loop
}

// prepared is one message ready to send.
type prepared struct {
	csid    byte
	typ     byte
	ts      uint32 // ms from the start of the loop
	payload []byte // the message body
	body    []byte // the body as it goes on the wire (chunkBody)
}

// Duration is how long one pass of the recording plays.
func (m *Media) Duration() time.Duration { return time.Duration(m.loopDur) * time.Millisecond }

// Bitrate is the recording's average bit rate over one loop, in bits per second.
func (m *Media) Bitrate() float64 { return float64(m.bytes*8) / m.Duration().Seconds() }

// ChunkSize is the RTMP chunk size the media was prepared for.
func (m *Media) ChunkSize() int { return m.chunkSize }

// PrepareMedia turns FLV tags into replayable messages for chunkSize-byte
// chunks. Timestamps are rebased so the first tag is at 0. A recording
// needs at least one audio or video frame.
func PrepareMedia(tags []Tag, chunkSize int) (*Media, error) {
	if chunkSize < 128 || chunkSize > 1<<24-1 {
		return nil, fmt.Errorf("chunk size %d out of range (128 to 16777215)", chunkSize)
	}
	m := &Media{chunkSize: chunkSize}
	var base uint32
	haveBase := false
	var lastTS, lastGap [2]uint32 // per kind: video, audio
	var seen [2]bool
	frames := 0
	metaSent := false
	for _, t := range tags {
		if t.Type != tagAudio && t.Type != tagVideo && t.Type != tagScript {
			continue
		}
		if !haveBase {
			base, haveBase = t.Timestamp, true
		}
		ts := t.Timestamp - base
		if int32(ts) < 0 {
			ts = 0 // a tag slightly before the first one: send it at once
		}
		switch {
		case t.Type == tagScript:
			// Only the first onMetaData, sent as @setDataFrame like a publisher does.
			if !metaSent && len(t.Data) > 0 {
				metaSent = true
				payload := appendAMF(nil, "@setDataFrame")
				payload = append(payload, t.Data...)
				m.start = append(m.start, m.prepare(csData, msgData, 0, payload))
			}
		case frames == 0 && isSequenceHeader(t):
			typ, cs := byte(msgVideo), byte(csVideo)
			if t.Type == tagAudio {
				typ, cs = msgAudio, csAudio
			}
			m.start = append(m.start, m.prepare(cs, typ, 0, t.Data))
		default:
			k, typ, cs := 0, byte(msgVideo), byte(csVideo)
			if t.Type == tagAudio {
				k, typ, cs = 1, msgAudio, csAudio
			}
			if seen[k] && ts > lastTS[k] {
				lastGap[k] = ts - lastTS[k]
			}
			seen[k], lastTS[k] = true, ts
			frames++
			m.loop = append(m.loop, m.prepare(cs, typ, ts, t.Data))
			m.bytes += int64(len(t.Data))
		}
	}
	if frames == 0 {
		return nil, errors.New("the recording has no audio or video frame")
	}
	// One loop lasts until each kind's last frame has played out.
	for k := range seen {
		if seen[k] {
			m.loopDur = max(m.loopDur, lastTS[k]+lastGap[k])
		}
	}
	if m.loopDur == 0 {
		m.loopDur = 1
	}
	return m, nil
}

func (m *Media) prepare(csid, typ byte, ts uint32, payload []byte) prepared {
	return prepared{csid: csid, typ: typ, ts: ts, payload: payload, body: chunkBody(csid, payload, m.chunkSize)}
}
