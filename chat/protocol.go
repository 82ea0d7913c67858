package chat

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Error codes sent in "error" objects; see docs/chat-protocol.md.
const (
	codeBadJSON      = "bad_json"
	codeUnknownType  = "unknown_type"
	codeBadRequest   = "bad_request"
	codeNameRequired = "name_required"
	codeBadName      = "bad_name"
	codeReservedName = "reserved_name"
	codeEmpty        = "empty"
	codeTooLong      = "too_long"
	codeFiltered     = "filtered"
	codeRateLimited  = "rate_limited"
	codeTimedOut     = "timed_out"
	codeBanned       = "banned"
	codeBadToken     = "bad_token"
	codeForbidden    = "forbidden"
	codeUnavailable  = "unavailable"
)

// Close codes and reasons beyond RFC 6455's.
const (
	closeBanned = 4003

	reasonSlow      = "slow_consumer"
	reasonTooMany   = "too_many_connections"
	reasonShutdown  = "shutdown"
	reasonBanned    = "banned"
	reasonInternal  = "internal_error"
	maxRefLen       = 64
	maxTimeout      = 7 * 24 * time.Hour
	defaultTimeout  = 10 * time.Minute
	timeFormatMilli = "2006-01-02T15:04:05.000Z"
)

// Event kinds. msg and system are kept in history and sequenced; the others are not.
const (
	KindMsg     = "msg"
	KindSystem  = "system"
	KindDeleted = "deleted"
	KindTimeout = "timeout"
	KindBan     = "ban"
	KindUnban   = "unban"
)

// System message kinds for Announce.
const (
	SystemLive      = "live"
	SystemOffline   = "offline"
	SystemTakenDown = "taken_down"
	SystemNotice    = "notice"
)

// inMsg is any client → server object.
type inMsg struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Token   string `json:"token"`
	Text    string `json:"text"`
	Ref     string `json:"ref"`
	ID      string `json:"id"`
	User    string `json:"user"`
	Seconds int64  `json:"seconds"`
	Reason  string `json:"reason"`
}

type userJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Mod  bool   `json:"mod"`
}

type msgJSON struct {
	Type string   `json:"type"`
	ID   string   `json:"id"`
	Time string   `json:"time"`
	User userJSON `json:"user"`
	Text string   `json:"text"`
	Ref  string   `json:"ref,omitempty"`
}

type systemJSON struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Time   string `json:"time"`
	Kind   string `json:"kind"`
	Text   string `json:"text"`
	Reason string `json:"reason,omitempty"`
}

type modJSON struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	User    string `json:"user,omitempty"`
	Seconds int64  `json:"seconds,omitempty"`
	Until   string `json:"until,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

type errorJSON struct {
	Type       string `json:"type"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Ref        string `json:"ref,omitempty"`
	RetryAfter int64  `json:"retry_after_ms,omitempty"`
}

type limitsJSON struct {
	MaxLength int   `json:"max_length"`
	Messages  int   `json:"messages"`
	WindowMS  int64 `json:"window_ms"`
}

type welcomeJSON struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	You     userJSON        `json:"you"`
	Viewers int             `json:"viewers"`
	History json.RawMessage `json:"history"`
	Limits  limitsJSON      `json:"limits"`
}

// mustJSON encodes v, which is always one of this file's plain structs.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("chat: encoding " + err.Error())
	}
	return b
}

func errorLine(code, msg, ref string, retry time.Duration) []byte {
	e := errorJSON{Type: "error", Code: code, Message: msg, Ref: ref}
	if retry > 0 {
		e.RetryAfter = retry.Milliseconds() + 1
	}
	return mustJSON(e)
}

// withSeq returns the public line of an event: its body with "seq" added for kept kinds.
func withSeq(e *Event) []byte {
	if !e.Keep() || len(e.Body) < 2 {
		return e.Body
	}
	b := make([]byte, 0, len(e.Body)+24)
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, ',')
	return append(b, e.Body[1:]...)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns prefix followed by 16 random base32 characters.
func newID(prefix string) string {
	var b [10]byte
	rand.Read(b[:])
	return prefix + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormatMilli) }
