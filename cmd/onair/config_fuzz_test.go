package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// FuzzConfigFile feeds arbitrary YAML to the config file loader. A file is
// either refused with an error (that never echoes a stream key) or gives a
// configuration the rest of onair can run with: checkRunnable holds what the
// packages and the HTTP server assume of it. The seeds (f.Add and
// testdata/fuzz/FuzzConfigFile) run with the normal tests.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"http-addr: \":9000\"\nrtmp-addr: \":2000\"\nhls-part-duration: 300ms\nchannels: [\"a:aaaaaaaaaa\", \"b:bbbbbbbbbb\"]\nmoderation-gate: false\n",
		"hls-segment-duration: 2562047h\nhls-part-duration: 1s\n",
		"memory-limit-mib: 9223372036854775807\n",
		"http-write-timeout: 1ns\nhls-segment-duration: 1ns\nhls-part-duration: 1ns\n",
		"channels:\n  - \"Bad Name:secret-key-1\"\n",
		"channel: {a: b}\n",
		"hls-segment-count: 99999999999999999999\n",
		"moderation-hash-distance: -1\nmoderation-timeout: -5s\n",
		"admin-token: x\n",
		"log-level: debug\nlog-format: json\ngc-percent: 0\n",
		"data-dir: \"\"\n",
		"redis-url: \"redis://:pw@127.0.0.1:6379/0\"\n",
		"? [a, b]\n: c\n",
		"&a [*a]\n",
		"shutdown-drain: 8s\nhttp-max-conns: 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg := defaultConfig()
		err := cfg.loadYAML(raw, "fuzz.yaml")
		if err == nil {
			err = cfg.validate()
		}
		if err != nil {
			for _, k := range channelKeysIn(raw) {
				if strings.Contains(err.Error(), k) {
					t.Fatalf("error echoes a stream key %q: %v", k, err)
				}
			}
			return
		}
		if err := checkRunnable(cfg); err != nil {
			t.Fatalf("accepted a configuration onair cannot run with: %v\n%s", err, raw)
		}
	})
}

// channelKeysIn finds the KEYs of the file's channel list, to check that
// errors never echo one.
func channelKeysIn(raw []byte) []string {
	var doc map[string]yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var keys []string
	for _, name := range []string{"channel", "channels"} {
		n, ok := doc[name]
		if !ok {
			continue
		}
		var items []string
		if n.Decode(&items) != nil {
			var one string
			if n.Decode(&one) != nil {
				continue
			}
			items = []string{one}
		}
		for _, it := range items {
			if _, k, ok := strings.Cut(it, ":"); ok && len(k) >= 4 {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// checkRunnable states what onair's parts assume of an accepted configuration.
// chat-* limits are left to the chat package's own validation.
func checkRunnable(c Config) error {
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	for key, d := range map[string]time.Duration{
		"hls-segment-duration": c.HLSSegmentDuration, "hls-part-duration": c.HLSPartDuration,
		"moderation-interval": c.ModerationInterval, "moderation-timeout": c.ModerationTimeout,
		"moderation-thumbnail-interval": c.ModerationThumbs,
		"http-header-timeout":           c.HTTPHeaderTimeout, "http-read-timeout": c.HTTPReadTimeout,
		"http-write-timeout": c.HTTPWriteTimeout, "http-idle-timeout": c.HTTPIdleTimeout,
	} {
		if d <= 0 {
			fail("%s %s is not positive", key, d)
		}
	}
	for key, d := range map[string]time.Duration{
		"reconnect-grace": c.Grace, "hls-ended-linger": c.HLSEndedLinger, "moderation-failure-after": c.ModerationFailAfter,
		"moderation-ban": c.ModerationBan, "shutdown-drain": c.ShutdownDrain,
	} {
		if d < 0 {
			fail("%s %s is negative", key, d)
		}
	}
	// What the server computes from the settings must not overflow.
	if c.HLSSegmentDuration > 0 && (c.HLSSegmentDuration > math.MaxInt64/4 || c.HTTPWriteTimeout < 4*c.HLSSegmentDuration) {
		fail("http-write-timeout %s is shorter than a blocking playlist request (4 × hls-segment-duration %s)", c.HTTPWriteTimeout, c.HLSSegmentDuration)
	}
	if c.MemoryLimitMiB < 0 || int64(c.MemoryLimitMiB) > math.MaxInt64>>20 {
		fail("memory-limit-mib %d overflows bytes", c.MemoryLimitMiB)
	}
	if c.HLSPartDuration > c.HLSSegmentDuration || c.HLSSegmentCount < 3 {
		fail("HLS part %s, segment %s, count %d", c.HLSPartDuration, c.HLSSegmentDuration, c.HLSSegmentCount)
	}
	if c.ModerationDistance < 0 || c.ModerationDistance > 64 {
		fail("moderation-hash-distance %d is not a Hamming distance of 64-bit hashes", c.ModerationDistance)
	}
	if c.DataDir == "" || c.FFmpegPath == "" {
		fail("data-dir %q or ffmpeg %q empty", c.DataDir, c.FFmpegPath)
	}
	if (c.AdminToken != "" && len(c.AdminToken) < 16) || (c.Secret != "" && len(c.Secret) < 16) {
		fail("admin-token or secret shorter than 16 characters")
	}
	if c.HTTPMaxConns < 1 || c.HTTPMaxHeaderBytes < 4096 {
		fail("http-max-conns %d, http-max-header-bytes %d", c.HTTPMaxConns, c.HTTPMaxHeaderBytes)
	}
	if _, _, err := c.channelKeys(); err != nil {
		fail("%v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
