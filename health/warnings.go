package health

import (
	"fmt"
	"math"
	"time"
)

// Warning codes: stable names for what the Message says in words.
const (
	CodeKeyframeInterval = "keyframe_interval" // keyframes further apart than the HLS segment duration
	CodeLowFrameRate     = "low_frame_rate"    // under 24 frames per second
	CodeNoAudio          = "no_audio"          // no audio track, or one that sends nothing
	CodeBitrateSwings    = "bitrate_swings"    // video bitrate varies more than 3× (VBR)
	CodeTimestampJumps   = "timestamp_jumps"   // video timestamps went back or jumped over 1 s
	CodeDroppedFrames    = "dropped_frames"    // frames missing from the video's timeline
	CodeLateMedia        = "late_media"        // media arrives slower than real time
	CodeProfile          = "codec_profile"     // an H.264 profile browsers do not play
)

// Thresholds.
const (
	minFPS          = 24
	swingRatio      = 3
	swingMinDelta   = 500_000 // bit/s: smaller swings do not matter to a player
	minSpans        = 4       // bitrate spans needed to judge swings
	droppedShare    = 0.02
	minDropped      = 5
	lateThreshold   = 2 * time.Second
	keySlackFactor  = 1.25
	keySlackAbsolut = 50 * time.Millisecond
)

// warnSet is a set of warnings, one bit per code.
type warnSet uint16

const (
	warnKeyframe warnSet = 1 << iota
	warnFPS
	warnAudio
	warnSwings
	warnJumps
	warnDropped
	warnLate
	warnProfile
)

// stats are the figures of one window.
type stats struct {
	opts               Options
	tracks             trackInfo
	hasVideo, hasAudio bool

	media       time.Duration // all media seen
	judged      bool          // enough of it to warn
	seconds     int           // whole seconds in the window
	fps         float64
	frames      int
	audioFrames int
	dropped     int
	videoAvg    int64
	audioAvg    int64
	videoMin    int64 // per span of one keyframe interval
	videoMax    int64
	spans       int
	keyMin      time.Duration
	keyAvg      time.Duration
	keyMax      time.Duration
	keyCount    int
	sinceKey    time.Duration // since the last keyframe (or the start, without one)
	jumps       int
	largestJump time.Duration
	late        time.Duration // how much further behind the wall clock the media is than at its best in the window

	warn warnSet
}

// keyThreshold is the longest keyframe interval that still makes segments of the target length.
func (st *stats) keyThreshold() time.Duration {
	return time.Duration(float64(st.opts.SegmentDuration)*keySlackFactor) + keySlackAbsolut
}

// worstKey is the longest keyframe interval, counting the one still open.
func (st *stats) worstKey() time.Duration {
	if st.sinceKey > st.keyMax && st.sinceKey > st.keyThreshold() {
		return st.sinceKey
	}
	return st.keyMax
}

// evaluate says which warnings the figures call for. It does not allocate.
func (st *stats) evaluate() warnSet {
	if !st.judged {
		return 0
	}
	var w warnSet
	if st.hasVideo {
		th := st.keyThreshold()
		if (st.keyCount >= 2 && st.keyMax > th) || st.sinceKey > 2*th {
			w |= warnKeyframe
		}
		if st.seconds >= 4 && st.fps > 0 && st.fps < minFPS {
			w |= warnFPS
		}
		if st.spans >= minSpans && st.videoMax > swingRatio*st.videoMin && st.videoMax-st.videoMin >= swingMinDelta {
			w |= warnSwings
		}
		if st.jumps > 0 {
			w |= warnJumps
		}
		if st.dropped >= minDropped && float64(st.dropped) > droppedShare*float64(st.frames+st.dropped) {
			w |= warnDropped
		}
		if st.tracks.badProfile {
			w |= warnProfile
		}
	}
	if !st.hasAudio || (st.seconds >= 4 && st.audioFrames == 0) {
		w |= warnAudio
	}
	if st.late >= lateThreshold {
		w |= warnLate
	}
	return w
}

// warnings spells out the warnings in set, in a fixed order.
func (st *stats) warnings(set warnSet) []Warning {
	out := []Warning{}
	window := fmt.Sprintf("%d s", st.seconds)
	if set&warnKeyframe != 0 {
		out = append(out, Warning{CodeKeyframeInterval, fmt.Sprintf(
			"keyframe interval is %s, longer than the %s HLS segments (viewers wait longer and fall further behind): set Settings → Output → Streaming → Keyframe Interval to %s",
			seconds(st.worstKey()), seconds(st.opts.SegmentDuration), recommendedKeyInterval(st.opts.SegmentDuration))})
	}
	if set&warnFPS != 0 {
		out = append(out, Warning{CodeLowFrameRate, fmt.Sprintf(
			"frame rate is %.0f fps, which looks choppy: set Settings → Video → Common FPS Values to 30", st.fps)})
	}
	if set&warnAudio != 0 {
		msg := "no audio track: some players and TVs refuse a stream without one; in Settings → Audio choose a Desktop Audio or Mic/Auxiliary Audio device (a muted source still sends a track)"
		if st.hasAudio {
			msg = fmt.Sprintf("the audio track sent nothing in the last %s: check Settings → Audio (Desktop Audio, Mic/Auxiliary Audio) and the Audio Mixer", window)
		}
		out = append(out, Warning{CodeNoAudio, msg})
	}
	if set&warnSwings != 0 {
		out = append(out, Warning{CodeBitrateSwings, fmt.Sprintf(
			"video bitrate swings %.1f–%s: viewers' players cannot plan for it; use CBR (Settings → Output → Streaming → Rate Control: CBR)",
			float64(st.videoMin)/1e6, mbits(st.videoMax))})
	}
	if set&warnJumps != 0 {
		out = append(out, Warning{CodeTimestampJumps, fmt.Sprintf(
			"timestamps jumped %d time(s) in the last %s (largest %s): the encoder or a source stalls; in Settings → Output → Streaming choose a faster CPU Usage Preset or a hardware encoder, and keep Settings → Video → Common FPS Values fixed",
			st.jumps, window, seconds(st.largestJump))})
	}
	if set&warnDropped != 0 {
		out = append(out, Warning{CodeDroppedFrames, fmt.Sprintf(
			"%d frames (%.0f %%) missing in the last %s: OBS is dropping frames; lower Settings → Output → Streaming → Bitrate or choose a faster CPU Usage Preset",
			st.dropped, 100*float64(st.dropped)/float64(st.frames+st.dropped), window)})
	}
	if set&warnLate != 0 {
		out = append(out, Warning{CodeLateMedia, fmt.Sprintf(
			"media arrives slower than real time (%s behind over the last %s): the encoder or the upload cannot keep up; lower Settings → Output → Streaming → Bitrate or Settings → Video → Output (Scaled) Resolution, or choose a faster CPU Usage Preset or a hardware encoder",
			seconds(st.late), window)})
	}
	if set&warnProfile != 0 {
		out = append(out, Warning{CodeProfile, fmt.Sprintf(
			"H.264 profile %s does not play in browsers: set Settings → Output → Streaming → Profile to high", st.tracks.profile)})
	}
	return out
}

// recommendedKeyInterval is what to set OBS's Keyframe Interval (whole seconds) to.
func recommendedKeyInterval(segment time.Duration) string {
	return fmt.Sprintf("%d s", max(1, int(segment/time.Second)))
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func mbits(bps int64) string {
	return fmt.Sprintf("%.1f Mbit/s", float64(bps)/1e6)
}

// round rounds to a given number of decimals, for the report.
func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}
