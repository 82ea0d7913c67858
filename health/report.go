package health

import (
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/onairhq/onair/ingest"
)

// Report is one live broadcast's health: figures over the recent window and
// what to change. Durations are in seconds, bitrates in bits per second.
type Report struct {
	Channel     string    `json:"channel"`
	BroadcastID string    `json:"broadcast_id"`
	Since       time.Time `json:"since"`
	// MediaSeconds is how much media was measured since the broadcast began.
	MediaSeconds float64 `json:"media_seconds"`
	// WindowSeconds is how many whole seconds of recent media the figures cover.
	WindowSeconds int `json:"window_seconds"`
	// Judged is false until enough media was seen to warn about it.
	Judged bool         `json:"judged"`
	Video  *VideoReport `json:"video,omitempty"`
	Audio  *AudioReport `json:"audio,omitempty"`
	// TimestampJumps counts video timestamps that went back or jumped over 1 s.
	TimestampJumps     int     `json:"timestamp_jumps"`
	LargestJumpSeconds float64 `json:"largest_jump_seconds"`
	// DroppedFrames counts frames missing from the video's timeline.
	DroppedFrames int `json:"dropped_frames"`
	// LateSeconds is how much further the media fell behind the wall clock
	// over the window: growing means the encoder or upload cannot keep up.
	LateSeconds float64 `json:"late_seconds"`
	// Warnings say, in words, what to change in OBS; empty when all is well.
	Warnings []Warning `json:"warnings"`
}

// VideoReport is the video track's figures.
type VideoReport struct {
	Codec   string  `json:"codec"`
	Profile string  `json:"profile,omitempty"`
	Level   string  `json:"level,omitempty"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	FPS     float64 `json:"fps"`
	// KeyframeInterval covers the intervals that ended in the window.
	KeyframeInterval Range `json:"keyframe_interval"`
	// Bitrate's min and max are per keyframe interval (at least 1 s), after the first seconds.
	Bitrate Range `json:"bitrate"`
}

// AudioReport is the audio track's figures.
type AudioReport struct {
	Codec      string `json:"codec"`
	Profile    string `json:"profile,omitempty"`
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
	Bitrate    int64  `json:"bitrate"`
}

// Range is a figure's minimum, average and maximum over the window.
type Range struct {
	Min float64 `json:"min"`
	Avg float64 `json:"avg"`
	Max float64 `json:"max"`
}

// Warning is one problem: a stable code and a message that names the OBS setting to change.
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (st *stats) report(b *ingest.Broadcast) Report {
	r := Report{
		Channel:            b.Channel,
		BroadcastID:        b.ID,
		Since:              b.Started,
		MediaSeconds:       round(st.media.Seconds(), 1),
		WindowSeconds:      st.seconds,
		Judged:             st.judged,
		TimestampJumps:     st.jumps,
		LargestJumpSeconds: round(st.largestJump.Seconds(), 2),
		DroppedFrames:      st.dropped,
		LateSeconds:        round(st.late.Seconds(), 2),
		Warnings:           st.warnings(st.warn),
	}
	if v := b.Tracks.Video; v != nil {
		r.Video = &VideoReport{
			Codec: string(v.Codec), Profile: st.tracks.profile, Level: st.tracks.level,
			Width: v.Width, Height: v.Height,
			FPS: round(st.fps, 1),
			KeyframeInterval: Range{
				Min: round(st.keyMin.Seconds(), 2),
				Avg: round(st.keyAvg.Seconds(), 2),
				Max: round(st.worstKey().Seconds(), 2),
			},
			Bitrate: Range{Min: float64(st.videoMin), Avg: float64(st.videoAvg), Max: float64(st.videoMax)},
		}
	}
	if a := b.Tracks.Audio; a != nil {
		r.Audio = &AudioReport{Codec: string(a.Codec), Profile: st.tracks.audioProfile,
			SampleRate: a.SampleRate, Channels: a.Channels, Bitrate: st.audioAvg}
	}
	return r
}

// trackInfo is what the decoder configurations say, read once per broadcast.
type trackInfo struct {
	profile, level string
	badProfile     bool // H.264 beyond High: browsers do not decode it
	audioProfile   string
}

func describeTracks(t ingest.Tracks) trackInfo {
	var ti trackInfo
	if v := t.Video; v != nil {
		switch v.Codec {
		case ingest.CodecH264:
			var sps h264.SPS
			if err := sps.Unmarshal(v.SPS); err == nil {
				ti.profile = h264Profile(sps)
				ti.level = fmt.Sprintf("%d.%d", sps.LevelIdc/10, sps.LevelIdc%10)
				ti.badProfile = sps.ProfileIdc != 66 && sps.ProfileIdc != 77 && sps.ProfileIdc != 100
			}
		case ingest.CodecHEVC:
			var sps h265.SPS
			if err := sps.Unmarshal(v.SPS); err == nil {
				ti.profile = hevcProfile(sps.ProfileTierLevel.GeneralProfileIdc)
				ti.level = fmt.Sprintf("%.1f", float64(sps.ProfileTierLevel.GeneralLevelIdc)/30)
			}
		}
	}
	if a := t.Audio; a != nil && a.Codec == ingest.CodecAAC {
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(a.Config); err == nil {
			ti.audioProfile = aacProfile(conf.Type)
		}
	}
	return ti
}

func h264Profile(sps h264.SPS) string {
	switch sps.ProfileIdc {
	case 66:
		if sps.ConstraintSet1Flag {
			return "Constrained Baseline"
		}
		return "Baseline"
	case 77:
		return "Main"
	case 88:
		return "Extended"
	case 100:
		return "High"
	case 110:
		return "High 10"
	case 122:
		return "High 4:2:2"
	case 244:
		return "High 4:4:4 Predictive"
	}
	return fmt.Sprintf("profile_idc %d", sps.ProfileIdc)
}

func hevcProfile(idc uint8) string {
	switch idc {
	case 1:
		return "Main"
	case 2:
		return "Main 10"
	case 3:
		return "Main Still Picture"
	case 4:
		return "Range Extensions"
	}
	return fmt.Sprintf("profile_idc %d", idc)
}

func aacProfile(t mpeg4audio.ObjectType) string {
	switch t {
	case mpeg4audio.ObjectTypeAACLC:
		return "AAC-LC"
	case mpeg4audio.ObjectTypeSBR:
		return "HE-AAC"
	case mpeg4audio.ObjectTypePS:
		return "HE-AAC v2"
	}
	return fmt.Sprintf("object type %d", t)
}
