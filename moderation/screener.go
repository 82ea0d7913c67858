package moderation

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"sync"
	"time"
)

// Action is a screener's decision about a frame.
type Action string

// Actions, in increasing severity.
const (
	Allow Action = "allow" // nothing wrong
	Flag  Action = "flag"  // record it for a human; the stream goes on
	Block Action = "block" // take the broadcast down
)

func (a Action) severity() int {
	switch a {
	case Block:
		return 2
	case Flag:
		return 1
	}
	return 0
}

// Verdict is what a screener decided about one frame.
type Verdict struct {
	Action Action
	// Reason is shown to operators, in chat and to the publisher.
	Reason string
	// Ban is how long the channel may not republish after a block;
	// zero means the Moderator's default.
	Ban time.Duration
	// Screener names the screener that decided.
	Screener string
}

// Frame is one decoded frame of a broadcast: a keyframe or a frame between keyframes.
type Frame struct {
	Channel     string
	BroadcastID string
	// PTS is the frame's presentation time within the broadcast.
	PTS time.Duration
	// Received is when ingest received the frame.
	Received time.Time
	// Keyframe is true when the frame is a keyframe.
	Keyframe bool
	// JPEG is the decoded image.
	JPEG []byte

	once sync.Once
	img  image.Image
	err  error
}

// Image decodes the JPEG once and returns the result to every caller.
func (f *Frame) Image() (image.Image, error) {
	f.once.Do(func() {
		f.img, f.err = jpeg.Decode(bytes.NewReader(f.JPEG))
		if f.err != nil {
			f.err = fmt.Errorf("decoding JPEG: %w", f.err)
		}
	})
	return f.img, f.err
}

// A Screener looks at a frame and returns a verdict. An error means it could
// not decide (this counts toward the failure policy); it is not a verdict.
// Screen must return promptly when ctx is done.
type Screener interface {
	Name() string
	Screen(ctx context.Context, f *Frame) (Verdict, error)
}
