// Package hooksig signs the requests onair sends to webhooks (the moderation
// hook, the events webhook) and checks such signatures, with HMAC-SHA256
// keyed by a shared secret. Both hooks sign the same way, so a receiver
// verifies either with the same code.
package hooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header carries "sha256=<hex HMAC-SHA256 of the body>". It signs the body
// alone, so a captured request can be replayed; TimedHeader is the one to check.
const Header = "X-Onair-Signature"

// TimedHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix
// seconds>." followed by the body>": the time is signed with the body, so a
// receiver can refuse a request outside its replay window before it parses
// anything.
const TimedHeader = "X-Onair-Signature-256"

// ReplayWindow is how old a request VerifyTimed accepts by default.
const ReplayWindow = 5 * time.Minute

// Sign returns the Header value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is a valid Header value for body, in constant time.
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// SignTimed returns the TimedHeader value for body sent at now.
func SignTimed(secret, body []byte, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifyTimed checks a TimedHeader value: the signature over its time and
// body, in constant time, and the time within window of now either way
// (window 0: ReplayWindow).
func VerifyTimed(secret, body []byte, header string, now time.Time, window time.Duration) error {
	if window <= 0 {
		window = ReplayWindow
	}
	tsPart, sigPart, ok := strings.Cut(header, ",")
	ts, okT := strings.CutPrefix(tsPart, "t=")
	_, okV := strings.CutPrefix(sigPart, "v1=")
	if !ok || !okT || !okV {
		return errors.New("malformed signature header")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("malformed signature time")
	}
	if !hmac.Equal([]byte(SignTimed(secret, body, time.Unix(sec, 0))), []byte(header)) {
		return errors.New("signature does not match")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("signed %v from now, outside the %v window", d.Round(time.Second), window)
	}
	return nil
}
