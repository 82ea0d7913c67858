package ingest

import "time"

// maxTimestampJump is how far a publisher's timestamps may jump (backwards, or
// forwards) between two messages of one kind before we treat it as a reset and
// re-anchor the timeline rather than carry the jump into the broadcast.
const (
	maxBackwardJump = time.Second
	maxForwardJump  = 30 * time.Second
)

// defaultFrameStep is the gap left after the last unit when the timeline is
// re-anchored and no frame duration has been observed yet.
const defaultFrameStep = 33 * time.Millisecond

// timeline turns one publisher session's 32-bit millisecond RTMP timestamps into
// broadcast DTS values: unwrapped at 2^32 ms, offset by a constant so the first
// one lands on base, and never decreasing per kind. Only a constant offset is
// applied in the normal case, so RTMP's DTS and composition times are carried exactly.
type timeline struct {
	started bool
	lastRaw uint32        // last raw timestamp seen (any kind), for unwrapping
	ext     int64         // unwrapped value of lastRaw, in ms
	offset  time.Duration // DTS = ext*ms + offset
	last    [3]kindState  // indexed by Kind
	// base is where the first DTS of this session goes.
	base time.Duration
}

type kindState struct {
	seen bool
	ext  int64         // last unwrapped raw timestamp of this kind
	dts  time.Duration // last DTS handed out
	step time.Duration // last positive DTS increment (≈ frame duration)
}

// newTimeline returns a timeline whose first timestamp maps to base.
func newTimeline(base time.Duration) *timeline {
	return &timeline{base: base}
}

// unwrap extends a 32-bit timestamp using the previous one: the difference is
// taken as a signed 32-bit value, so a wrap from 0xffffffxx to 0x000000xx is a small step.
func (t *timeline) unwrap(raw uint32) int64 {
	if !t.started {
		t.started = true
		t.lastRaw = raw
		t.ext = int64(raw)
		t.offset = t.base - time.Duration(raw)*time.Millisecond
		return t.ext
	}
	t.ext += int64(int32(raw - t.lastRaw))
	t.lastRaw = raw
	return t.ext
}

// dts maps a raw RTMP timestamp of kind k to a broadcast DTS.
func (t *timeline) dts(k Kind, raw uint32) time.Duration {
	ext := t.unwrap(raw)
	ks := &t.last[k]
	if ks.seen {
		jump := time.Duration(ext-ks.ext) * time.Millisecond
		if jump < -maxBackwardJump || jump > maxForwardJump {
			// The publisher reset or skipped its clock: continue just after where we are.
			t.offset = t.highest() + t.step() - time.Duration(ext)*time.Millisecond
		}
	}
	d := time.Duration(ext)*time.Millisecond + t.offset
	if ks.seen && d < ks.dts {
		d = ks.dts // small backward jitter: hold, never go back
	}
	if ks.seen && d > ks.dts {
		ks.step = d - ks.dts
	}
	ks.seen, ks.ext, ks.dts = true, ext, d
	return d
}

// highest is the largest DTS handed out so far.
func (t *timeline) highest() time.Duration {
	var h time.Duration
	for _, ks := range t.last {
		if ks.seen && ks.dts > h {
			h = ks.dts
		}
	}
	return h
}

// step is the best guess at one frame duration: the video's if known.
func (t *timeline) step() time.Duration {
	if s := t.last[KindVideo].step; s > 0 && s < time.Second {
		return s
	}
	if s := t.last[KindAudio].step; s > 0 && s < time.Second {
		return s
	}
	return defaultFrameStep
}

// next returns where a following session should start so that its DTS
// continues after this one's (the last DTS plus one frame duration).
func (t *timeline) next() time.Duration {
	if !t.started {
		return t.base
	}
	return t.highest() + t.step()
}
