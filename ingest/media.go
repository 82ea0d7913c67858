package ingest

import (
	"context"
	"errors"
	"time"
)

// Codec names an elementary-stream codec, as parsed from the FLV tag bytes.
type Codec string

// Codecs onair can carry.
const (
	CodecH264 Codec = "h264"
	CodecHEVC Codec = "hevc"
	CodecAV1  Codec = "av1"
	CodecAAC  Codec = "aac"
	CodecOpus Codec = "opus"
)

// Kind tells a video access unit from an audio one.
type Kind uint8

// Access-unit kinds.
const (
	KindVideo Kind = iota + 1
	KindAudio
)

// VideoTrack is a video stream's decoder configuration.
type VideoTrack struct {
	Codec Codec
	// Parameter sets, without start codes. H.264 uses SPS and PPS; HEVC also VPS.
	VPS, SPS, PPS []byte
	// Width and Height come from the SPS.
	Width, Height int
}

// AudioTrack is an audio stream's decoder configuration.
type AudioTrack struct {
	Codec Codec
	// Config is the AAC AudioSpecificConfig (or the Opus ID header).
	Config     []byte
	SampleRate int
	Channels   int
}

// Tracks is the fixed set of tracks of one broadcast; either may be nil, not both.
type Tracks struct {
	Video *VideoTrack
	Audio *AudioTrack
}

// AccessUnit is one video frame or one audio frame, codec-neutral.
//
// DTS and PTS are RTMP's timestamp and timestamp+composition time, rebased so that
// they start near zero for a broadcast and never go backwards within it, also across
// a publisher reconnect inside the grace period.
type AccessUnit struct {
	Kind Kind
	DTS  time.Duration
	PTS  time.Duration
	// Key marks a video random-access point (IDR / IRAP).
	Key bool
	// NALUs holds a video frame's NAL units, without start codes or length prefixes.
	NALUs [][]byte
	// Frame holds one raw audio frame (AAC without ADTS).
	Frame []byte
	// Received is when ingest got the message off the wire; latency is measured from it.
	Received time.Time
	// Discontinuity marks the first lead-track frame (video, or audio when
	// there is none) of a publisher that returned within the grace period: a
	// new encoder session, whose timeline follows the broadcast's but whose
	// frames do not follow from the ones before.
	Discontinuity bool
}

// Broadcast is one live broadcast of a channel: from the first publish until the
// publisher stops, is taken down, or stays away longer than the grace period.
// A reconnect within the grace period with the same tracks continues the same Broadcast.
type Broadcast struct {
	// ID is unique per broadcast (not secret).
	ID      string
	Channel string
	Tracks  Tracks
	Started time.Time
}

// EndReason says why a broadcast ended.
type EndReason string

// End reasons.
const (
	EndStopped   EndReason = "stopped"    // the publisher unpublished
	EndTimeout   EndReason = "timeout"    // the publisher dropped and did not return within the grace period
	EndTakenDown EndReason = "taken_down" // moderation or an admin ended it
	EndShutdown  EndReason = "shutdown"   // the server is stopping
	EndNewTracks EndReason = "new_tracks" // the publisher came back with different codec parameters
	EndRemoved   EndReason = "removed"    // the channel was removed from the configuration
	EndMoved     EndReason = "moved"      // another node publishes the channel now (its publisher moved there, or took over)
	EndByAdmin   EndReason = "ended"      // an administrator ended it (no ban)
)

// ErrEnded is what Feed.Next returns, as an *EndError, once a broadcast has
// ended and its queue is drained.
var ErrEnded = errors.New("broadcast ended")

// EndError says why a broadcast ended, so every consumer reacts to the same
// end the same way. errors.Is(err, ErrEnded) is true for it.
type EndError struct {
	Reason EndReason
	Detail string
}

func (e *EndError) Error() string {
	if e.Detail == "" {
		return "broadcast ended: " + string(e.Reason)
	}
	return "broadcast ended: " + string(e.Reason) + ": " + e.Detail
}

// Is makes an *EndError match ErrEnded.
func (e *EndError) Is(target error) bool { return target == ErrEnded }

// EndReasonOf returns the reason carried by an error from Feed.Next, or "" if
// the error is not a broadcast end.
func EndReasonOf(err error) EndReason {
	var e *EndError
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// A Consumer receives the media of every broadcast. Consume is called in its own
// goroutine, owned by the channel hub, once per broadcast; it reads feed until
// Next returns an error and must return soon after ctx is done.
type Consumer interface {
	Consume(ctx context.Context, b *Broadcast, feed *Feed)
}

// Observer is told when broadcasts start and end (chat notices, webhooks, API).
// Calls are made outside the media path and must not block for long.
type Observer interface {
	BroadcastStarted(b *Broadcast)
	BroadcastEnded(b *Broadcast, reason EndReason, detail string)
}

// PublisherObserver is an Observer that is also told when a broadcast's
// publisher drops (the broadcast waits out the grace period for it; a
// takeover's old publisher counts) and when a publisher continues it within
// the grace period. The calls come in order with the Observer's, on the same
// goroutine: a PublisherLost always falls between the broadcast's
// BroadcastStarted and BroadcastEnded, and a PublisherReturned follows its
// PublisherLost.
type PublisherObserver interface {
	Observer
	PublisherLost(b *Broadcast, detail string)
	PublisherReturned(b *Broadcast)
}

// TakedownObserver is an Observer that is also told of every Hub.TakeDown,
// in order with the Observer's calls and before the BroadcastEnded
// (EndTakenDown) of the broadcast it ended. b is nil when the channel was not
// live (the takedown only bans it); ban is zero for no ban.
type TakedownObserver interface {
	Observer
	TakenDown(channel string, b *Broadcast, reason string, ban time.Duration)
}
