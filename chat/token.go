package chat

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignModeratorToken returns a token that makes its holder a moderator of channel for ttl.
func SignModeratorToken(secret []byte, channel string, ttl time.Duration) string {
	exp := time.Now().Add(ttl).Unix()
	return fmt.Sprintf("v1.%s.%d.%s", channel, exp, tokenMAC(secret, channel, exp))
}

// VerifyModeratorToken checks that token was signed with secret for channel and has not expired.
func VerifyModeratorToken(secret []byte, channel, token string, now time.Time) error {
	if len(secret) == 0 {
		return errors.New("moderator tokens are disabled (no secret)")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return errors.New("malformed moderator token")
	}
	if parts[1] != channel {
		return errors.New("moderator token is for another channel")
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return errors.New("malformed moderator token expiry")
	}
	if subtle.ConstantTimeCompare([]byte(parts[3]), []byte(tokenMAC(secret, channel, exp))) != 1 {
		return errors.New("bad moderator token signature")
	}
	if now.Unix() >= exp {
		return errors.New("moderator token expired")
	}
	return nil
}

func tokenMAC(secret []byte, channel string, exp int64) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "onair-chat-mod/v1\n%s\n%d", channel, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
