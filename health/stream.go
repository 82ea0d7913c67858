package health

import (
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// ringSize is how many one-second buckets a stream keeps (the window's upper bound).
const ringSize = 64

// warmup is how much of a broadcast's start the bitrate swings ignore: an
// encoder's rate control settles in its first seconds.
const warmup = 2

// bucket is one second of media (by DTS).
type bucket struct {
	sec         int64 // the media second held; a stale bucket holds an older one
	videoBytes  int64
	audioBytes  int64
	frames      int32
	audioFrames int32
	dropped     int32
	hasWall     bool
	firstVideo  time.Duration // DTS of its first video frame, when frames > 0
	lag         time.Duration // arrival of its first unit minus its media time, both from the broadcast's first unit
}

// keyInterval is one measured keyframe interval, ending at a keyframe.
type keyInterval struct {
	at, d time.Duration
}

// jump is one timestamp discontinuity in the video.
type jump struct {
	at, size time.Duration
}

// stream is one broadcast's measurements.
type stream struct {
	b      *ingest.Broadcast
	opts   Options
	tracks trackInfo

	mu      sync.Mutex
	logged  warnSet
	started bool
	t0      time.Time     // arrival of the first unit, moved on by each stall (see add)
	wall    time.Time     // arrival of the last unit
	dts0    time.Duration // DTS of the first unit
	lastDTS time.Duration // highest DTS seen
	cur     int64         // newest media second
	first   int64         // first media second
	buckets [ringSize]bucket

	haveVideo bool
	lastVideo time.Duration
	step      time.Duration // smallest plausible video DTS step: one frame
	haveKey   bool
	lastKey   time.Duration
	keys      [ringSize]keyInterval
	nkeys     int
	jumps     [16]jump
	njumps    int
}

func newStream(b *ingest.Broadcast, opts Options) *stream {
	return &stream{b: b, opts: opts, tracks: describeTracks(b.Tracks)}
}

// add accounts one access unit. It reports whether a new second of media
// began (the moment to look for new warnings).
func (s *stream) add(au *ingest.AccessUnit) (rolled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := int64(au.DTS / time.Second)
	if !au.Received.IsZero() {
		// A pause in arrivals (a publisher reconnecting within the grace
		// period, a network stall) is not an encoder falling behind: it is
		// left out of the lateness, which measures a steady shortfall.
		if gap := au.Received.Sub(s.wall); !s.wall.IsZero() && !s.t0.IsZero() && gap > stallGap {
			s.t0 = s.t0.Add(gap)
		}
		s.wall = au.Received
	}
	if !s.started {
		s.started, s.t0, s.dts0, s.lastDTS = true, au.Received, au.DTS, au.DTS
		s.cur, s.first = sec, sec
		s.buckets[sec%ringSize] = bucket{sec: sec}
		s.stamp(&s.buckets[sec%ringSize], au)
	}
	if sec > s.cur {
		for n := max(s.cur+1, sec-ringSize+1); n <= sec; n++ {
			s.buckets[n%ringSize] = bucket{sec: n}
		}
		s.cur, rolled = sec, true
		s.stamp(&s.buckets[sec%ringSize], au)
	}
	s.lastDTS = max(s.lastDTS, au.DTS)
	bk := &s.buckets[sec%ringSize]
	if bk.sec != sec {
		return rolled // older than the window (audio far behind video): not counted
	}
	switch au.Kind {
	case ingest.KindVideo:
		s.addVideo(bk, au)
	case ingest.KindAudio:
		bk.audioBytes += int64(len(au.Frame))
		bk.audioFrames++
	}
	return rolled
}

// stamp records when a bucket's first unit arrived, against its media time.
func (s *stream) stamp(bk *bucket, au *ingest.AccessUnit) {
	if au.Received.IsZero() || s.t0.IsZero() {
		return
	}
	bk.hasWall = true
	bk.lag = au.Received.Sub(s.t0) - (au.DTS - s.dts0)
}

// Timestamp steps of video frames: a step of 0 or less means the publisher's
// clock went back (ingest holds it, never goes back); more than maxGap forward
// is a jump, not a frame.
const (
	stallGap = time.Second // no unit for this long: a stall, not a slow encoder
	maxGap   = time.Second
	minStep  = 4 * time.Millisecond // 250 fps: smaller steps are not frames
)

func (s *stream) addVideo(bk *bucket, au *ingest.AccessUnit) {
	var size int
	for _, n := range au.NALUs {
		size += 4 + len(n) // as carried, with a length prefix
	}
	bk.videoBytes += int64(size)
	if bk.frames == 0 {
		bk.firstVideo = au.DTS
	}
	bk.frames++
	if s.haveVideo {
		d := au.DTS - s.lastVideo
		switch {
		case d <= 0 || d > maxGap:
			s.jumps[s.njumps%len(s.jumps)] = jump{at: au.DTS, size: d}
			s.njumps++
			s.haveKey = false // the interval across a jump is not the encoder's
		case s.step > 0 && d > s.step*3/2:
			bk.dropped += int32((d+s.step/2)/s.step - 1)
		}
		if d >= minStep && d <= maxGap && (s.step == 0 || d < s.step) {
			s.step = d
		}
	}
	s.haveVideo, s.lastVideo = true, au.DTS
	if au.Key {
		if s.haveKey && au.DTS > s.lastKey {
			s.keys[s.nkeys%ringSize] = keyInterval{at: au.DTS, d: au.DTS - s.lastKey}
			s.nkeys++
		}
		s.haveKey, s.lastKey = true, au.DTS
	}
}

// stats are the window's figures; s.mu is held.
func (s *stream) stats() stats {
	st := stats{opts: s.opts, tracks: s.tracks, hasVideo: s.b.Tracks.Video != nil, hasAudio: s.b.Tracks.Audio != nil}
	if !s.started {
		return st
	}
	st.media = s.lastDTS - s.dts0
	st.judged = st.media >= s.opts.MinMedia
	wsec := int64(s.opts.Window / time.Second)
	from := max(s.first, s.cur-wsec)
	// Whole seconds before the current one.
	var vbytes, abytes int64
	var frames, aframes, dropped int32
	minLag, haveLag := time.Duration(0), false
	var firstFrame time.Duration
	for n := from; n < s.cur; n++ {
		bk := &s.buckets[n%ringSize]
		if bk.sec != n {
			continue
		}
		st.seconds++
		vbytes += bk.videoBytes
		abytes += bk.audioBytes
		if bk.frames > 0 && frames == 0 {
			firstFrame = bk.firstVideo
		}
		frames += bk.frames
		aframes += bk.audioFrames
		dropped += bk.dropped
		if bk.hasWall && (!haveLag || bk.lag < minLag) {
			minLag, haveLag = bk.lag, true
		}
	}
	if last := &s.buckets[s.cur%ringSize]; haveLag && last.hasWall && last.lag > minLag {
		st.late = last.lag - minLag
	}
	if st.seconds > 0 {
		secs := float64(st.seconds)
		// Frames over the time from the first of them to the frame after the last.
		if last := &s.buckets[s.cur%ringSize]; last.frames > 0 && last.firstVideo > firstFrame {
			st.fps = float64(frames) / (last.firstVideo - firstFrame).Seconds()
		} else {
			st.fps = float64(frames) / secs
		}
		st.videoAvg = int64(float64(vbytes*8) / secs)
		st.audioAvg = int64(float64(abytes*8) / secs)
	}
	st.frames, st.audioFrames, st.dropped = int(frames), int(aframes), int(dropped)
	s.keyStats(&st, time.Duration(from)*time.Second)
	s.swings(&st, from)
	for i := range min(s.njumps, len(s.jumps)) {
		j := s.jumps[i]
		if j.at >= time.Duration(from)*time.Second {
			st.jumps++
			st.largestJump = max(st.largestJump, j.size.Abs())
		}
	}
	st.warn = st.evaluate()
	return st
}

// keyStats fills the keyframe interval figures from the intervals ending in the window.
func (s *stream) keyStats(st *stats, from time.Duration) {
	var sum time.Duration
	for i := range min(s.nkeys, ringSize) {
		k := s.keys[i]
		if k.at < from {
			continue
		}
		if st.keyCount == 0 || k.d < st.keyMin {
			st.keyMin = k.d
		}
		st.keyMax = max(st.keyMax, k.d)
		sum += k.d
		st.keyCount++
	}
	if st.keyCount > 0 {
		st.keyAvg = sum / time.Duration(st.keyCount)
	}
	if s.haveKey {
		st.sinceKey = s.lastDTS - s.lastKey
	} else if s.haveVideo {
		st.sinceKey = s.lastDTS - s.dts0
	}
}

// swings fills the video bitrate's min and max over spans of one keyframe
// interval (at least a second), so that a long GOP's big keyframe does not
// read as rate swings; the first seconds are left out.
func (s *stream) swings(st *stats, from int64) {
	span := int64(1)
	if st.keyCount > 0 {
		span = max(1, int64((st.keyAvg+time.Second/2)/time.Second))
	}
	start := max(from, s.first+warmup)
	for n := start; n+span <= s.cur; n++ {
		var bytes int64
		ok := true
		for k := n; k < n+span; k++ {
			bk := &s.buckets[k%ringSize]
			if bk.sec != k || bk.frames == 0 {
				ok = false // a gap: reported as a timestamp jump, not as a swing
				break
			}
			bytes += bk.videoBytes
		}
		if !ok {
			continue
		}
		rate := bytes * 8 / span
		if st.spans == 0 || rate < st.videoMin {
			st.videoMin = rate
		}
		st.videoMax = max(st.videoMax, rate)
		st.spans++
	}
}

// report builds the plain-data report.
func (s *stream) report() Report {
	s.mu.Lock()
	st := s.stats()
	s.mu.Unlock()
	return st.report(s.b)
}
