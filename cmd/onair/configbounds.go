package main

import (
	"math"
	"time"
)

// Bounds of settings that the type alone does not give.
const (
	maxMemoryLimitMiB = math.MaxInt64 >> 20 // debug.SetMemoryLimit takes bytes
	minSecretLength   = 16                  // admin-token and secret, when set
	maxHashDistance   = 64                  // bits of a perceptual hash
)

// validateBounds checks the numbers and durations of the settings that the
// config fuzz target found accepted out of range (FuzzConfigFile). A setting
// that would overflow or make no sense is refused at start with its name,
// never silently replaced.
func (c *Config) validateBounds(bad func(key, format string, a ...any)) {
	if c.HLSSegmentDuration > math.MaxInt64/4 {
		bad("hls-segment-duration", "%s is too long", c.HLSSegmentDuration)
	}
	if c.MemoryLimitMiB > maxMemoryLimitMiB {
		bad("memory-limit-mib", "must be at most %d", int64(maxMemoryLimitMiB))
	}
	if c.DataDir == "" {
		bad("data-dir", "must not be empty")
	}
	if c.FFmpegPath == "" {
		bad("ffmpeg", "must not be empty")
	}
	for key, v := range map[string]string{"admin-token": c.AdminToken, "secret": c.Secret} {
		if v != "" && len(v) < minSecretLength {
			bad(key, "must be at least %d characters (or unset, to use the one generated in data-dir)", minSecretLength)
		}
	}
	if c.ModerationDistance < 0 || c.ModerationDistance > maxHashDistance {
		bad("moderation-hash-distance", "must be from 0 to %d bits, got %d", maxHashDistance, c.ModerationDistance)
	}
	for key, d := range map[string]time.Duration{"moderation-timeout": c.ModerationTimeout, "moderation-thumbnail-interval": c.ModerationThumbs} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	for key, d := range map[string]time.Duration{"hls-ended-linger": c.HLSEndedLinger, "moderation-failure-after": c.ModerationFailAfter, "moderation-ban": c.ModerationBan} {
		if d < 0 {
			bad(key, "must not be negative")
		}
	}
}
