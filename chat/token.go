package chat

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxModeratorTokenTTL bounds how long a moderator token may be valid: a leaked token is
// useless after this, even if nobody revokes it.
const MaxModeratorTokenTTL = 30 * 24 * time.Hour

// ModeratorToken is what a moderator token says: who it is for, until when, and its id
// (what a revocation names).
type ModeratorToken struct {
	Channel string
	Expires time.Time
	ID      string
}

// SignModeratorToken returns a token that makes its holder a moderator of channel for ttl
// (capped at MaxModeratorTokenTTL), with a fresh random id:
// "v2.{channel}.{expiry unix s}.{id}.{mac}".
func SignModeratorToken(secret []byte, channel string, ttl time.Duration) string {
	var id string
	// Never starting with "-": `onair token revoke ID` would read it as a flag.
	for id == "" || id[0] == '-' {
		var b [12]byte
		rand.Read(b[:])
		id = base64.RawURLEncoding.EncodeToString(b[:])
	}
	exp := time.Now().Add(min(ttl, MaxModeratorTokenTTL)).Unix()
	return fmt.Sprintf("v2.%s.%d.%s.%s", channel, exp, id, tokenMAC(secret, channel, exp, id))
}

// ParseModeratorToken reads a token's fields without checking its signature: to name it in
// a revocation, not to trust it.
func ParseModeratorToken(token string) (ModeratorToken, error) {
	parts := strings.Split(token, ".")
	if len(token) > 256 || len(parts) != 5 || parts[0] != "v2" {
		return ModeratorToken{}, errors.New("malformed moderator token")
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || exp <= 0 || exp > 1<<40 {
		return ModeratorToken{}, errors.New("malformed moderator token expiry")
	}
	if !validTokenID(parts[3]) {
		return ModeratorToken{}, errors.New("malformed moderator token id")
	}
	return ModeratorToken{Channel: parts[1], Expires: time.Unix(exp, 0), ID: parts[3]}, nil
}

// validTokenID reports whether id looks like one SignModeratorToken makes.
func validTokenID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// VerifyModeratorToken checks that token was signed with secret for channel and has not expired.
// Revocation is the server's to check.
func VerifyModeratorToken(secret []byte, channel, token string, now time.Time) error {
	_, err := verifyModeratorToken(secret, channel, token, now)
	return err
}

func verifyModeratorToken(secret []byte, channel, token string, now time.Time) (ModeratorToken, error) {
	if len(secret) == 0 {
		return ModeratorToken{}, errors.New("moderator tokens are disabled (no secret)")
	}
	t, err := ParseModeratorToken(token)
	if err != nil {
		return t, err
	}
	if t.Channel != channel {
		return t, errors.New("moderator token is for another channel")
	}
	mac := token[strings.LastIndexByte(token, '.')+1:]
	if subtle.ConstantTimeCompare([]byte(mac), []byte(tokenMAC(secret, channel, t.Expires.Unix(), t.ID))) != 1 {
		return t, errors.New("bad moderator token signature")
	}
	if !now.Before(t.Expires) {
		return t, errors.New("moderator token expired")
	}
	if t.Expires.Sub(now) > MaxModeratorTokenTTL+time.Hour {
		return t, errors.New("moderator token valid for longer than allowed")
	}
	return t, nil
}

func tokenMAC(secret []byte, channel string, exp int64, id string) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "onair-chat-mod/v2\n%s\n%d\n%s", channel, exp, id)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
