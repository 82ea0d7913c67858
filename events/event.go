// Package events delivers onair's events (a broadcast started, stopped, is
// waiting for its publisher, was taken down, was flagged by moderation) to an
// HTTP webhook.
//
// A Notifier owns a bounded in-memory queue and one delivery goroutine.
// Send never blocks: it stamps the event (id, per-channel seq, time) and
// queues it; when the queue is full the oldest queued event is dropped and
// counted. The goroutine POSTs one event per request, signed like the
// moderation hook (internal/hooksig), in the order they were sent, and
// retries the event at the head of the queue with exponential backoff until
// the receiver takes it (2xx) or refuses it (a 4xx other than 408 and 429):
// so events of one channel, and indeed of all channels, arrive in order, and
// a receiver that was down gets what was queued meanwhile once it is back.
// The queue lives in memory: what it holds when onair stops is lost.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Type names an event.
type Type string

// Event types.
const (
	PublishStarted        Type = "publish_started"        // a broadcast began
	PublishStopped        Type = "publish_stopped"        // a broadcast ended, for any reason but a takedown
	PublisherReconnecting Type = "publisher_reconnecting" // the publisher dropped; the broadcast waits out the grace period
	PublisherReturned     Type = "publisher_returned"     // the publisher came back within the grace period
	TakenDown             Type = "taken_down"             // moderation or an admin ended the broadcast (or banned the channel)
	ModerationFlag        Type = "moderation_flag"        // a screener flagged the broadcast for a human
)

// Event is one event as the webhook receives it (a JSON object). Send fills
// ID, Seq and Time; the fields after Time are set by the types that carry them.
type Event struct {
	// ID is unique per event: a receiver can use it to drop a repeated delivery.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// Channel is the channel's public name.
	Channel string `json:"channel"`
	// BroadcastID names the broadcast; empty for a takedown of a channel that was not live.
	BroadcastID string `json:"broadcast_id,omitempty"`
	// Seq counts the channel's events from 1 in this run of onair; each
	// event's is one more than the previous one's of its channel.
	Seq uint64 `json:"seq"`
	// Time is when the event happened (RFC 3339, nanoseconds, UTC).
	Time time.Time `json:"time"`

	// Tracks are the broadcast's codecs (publish_started).
	Tracks *Tracks `json:"tracks,omitempty"`
	// Reason: why the broadcast ended (publish_stopped: stopped, timeout,
	// shutdown, new_tracks, removed, moved), why it was taken down
	// (taken_down) or flagged (moderation_flag).
	Reason string `json:"reason,omitempty"`
	// Detail says more, for people (publish_stopped, publisher_reconnecting).
	Detail string `json:"detail,omitempty"`
	// DurationSeconds is how long the broadcast lasted (publish_stopped, taken_down).
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	// GraceSeconds is how long the broadcast waits for its publisher (publisher_reconnecting).
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
	// BanSeconds is how long the channel may not publish (taken_down; 0: no ban).
	BanSeconds float64 `json:"ban_seconds,omitempty"`
	// BannedUntil is when that ban ends (taken_down with a ban).
	BannedUntil *time.Time `json:"banned_until,omitempty"`
	// Screener is who decided (moderation_flag: hashlist, webhook, sampler, failure-policy…).
	Screener string `json:"screener,omitempty"`
	// Verdict is the screener's action (moderation_flag: "flag").
	Verdict string `json:"verdict,omitempty"`
	// FrameTime is the screened frame's media time in the broadcast, in seconds (moderation_flag).
	FrameTime *float64 `json:"frame_time,omitempty"`
}

// Tracks describes a broadcast's codecs.
type Tracks struct {
	Video *VideoTrack `json:"video,omitempty"`
	Audio *AudioTrack `json:"audio,omitempty"`
}

// VideoTrack is a video track's codec and frame size.
type VideoTrack struct {
	Codec  string `json:"codec"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// AudioTrack is an audio track's codec and format.
type AudioTrack struct {
	Codec      string `json:"codec"`
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

// newID returns a random 128-bit event id in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
