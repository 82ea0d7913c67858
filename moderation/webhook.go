package moderation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/onairhq/onair/internal/hooksig"
)

// maxReason bounds a verdict's reason, in bytes: it goes into logs, the API,
// a chat notice and the publisher's error.
const maxReason = 256

// maxBanSeconds is the longest ban, in seconds, that a time.Duration holds.
const maxBanSeconds = float64(math.MaxInt64 / int64(time.Second))

// webhookAnswer is the JSON a hook returns. ban_seconds is kept raw so that
// numbers out of range and non-numbers are seen and reported, not silently
// turned into no ban or a huge one.
type webhookAnswer struct {
	Action     Action          `json:"action"`
	Reason     string          `json:"reason"`
	BanSeconds json.RawMessage `json:"ban_seconds"`
}

// parseAnswer reads a hook's JSON answer into a verdict. The answer must be
// a JSON object with an action of allow, flag or block; anything else is an
// error (a screening failure, not a verdict). The reason is cleaned of
// control characters and cut to maxReason bytes. For a block, ban_seconds
// becomes the ban: absent, null or 0 leave it to the default; a positive
// number is rounded up to at least a second, and one beyond what a Duration
// holds becomes the longest Duration (the Moderator cuts it to its MaxBan);
// a negative number or a non-number is not used (the default ban applies)
// and note says so, for the log.
func parseAnswer(data []byte) (v Verdict, note string, err error) {
	if len(data) > maxAnswer {
		return Verdict{}, "", errors.New("moderation webhook answer too large")
	}
	var a webhookAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return Verdict{}, "", fmt.Errorf("parsing moderation webhook answer: %w", err)
	}
	switch a.Action {
	case Allow, Flag, Block:
	default:
		return Verdict{}, "", fmt.Errorf("moderation webhook answered unknown action %q", cleanReason(string(a.Action)))
	}
	v = Verdict{Action: a.Action, Reason: cleanReason(a.Reason)}
	raw := strings.TrimSpace(string(a.BanSeconds))
	if a.Action != Block || raw == "" || raw == "null" {
		return v, "", nil
	}
	v.Ban, note = banSeconds(raw)
	return v, note, nil
}

// banSeconds converts a JSON value given as ban_seconds; see parseAnswer.
func banSeconds(raw string) (time.Duration, string) {
	var num json.Number
	if strings.HasPrefix(raw, `"`) || json.Unmarshal([]byte(raw), &num) != nil {
		return 0, fmt.Sprintf("ban_seconds %q is not a number: the default ban applies", cleanReason(raw))
	}
	s := num.String()
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	switch {
	case !strings.ContainsAny(mantissa, "123456789"):
		return 0, "" // zero, however written
	case strings.HasPrefix(s, "-"):
		return 0, fmt.Sprintf("ban_seconds %s is negative: the default ban applies", cleanReason(s))
	}
	// Positive: out of range, ParseFloat gives +Inf (too large) or 0 (too small).
	x, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Sprintf("ban_seconds %q is not a number: the default ban applies", cleanReason(s))
	}
	if x >= maxBanSeconds {
		return math.MaxInt64, ""
	}
	return max(time.Duration(x*float64(time.Second)), time.Second), ""
}

// cleanReason makes outside text safe to log and show: valid UTF-8, no
// control characters, trimmed, at most maxReason bytes.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimSpace(s[:cut])
	}
	return s
}

// SignatureHeader carries the HMAC-SHA256 of a webhook request body.
//
// Deprecated: it signs the body alone, so a captured request can be replayed
// (the body's sent_at is the only guard). Check TimedSignatureHeader.
const SignatureHeader = hooksig.Header

// TimedSignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<unix seconds>." followed by the body>": the time is signed with the body,
// so a hook can refuse a request outside its replay window before it parses
// anything (see VerifyTimedSignature).
const TimedSignatureHeader = hooksig.TimedHeader

// ReplayWindow is how old a request VerifyTimedSignature accepts by default.
const ReplayWindow = hooksig.ReplayWindow

// maxAnswer bounds a webhook's answer; a verdict is a few hundred bytes.
const maxAnswer = 64 << 10

// Webhook is a Screener that asks an HTTP endpoint for a verdict. Each frame
// is POSTed as multipart/form-data (see docs/moderation.md) signed with
// HMAC-SHA256 over the body; the answer is JSON
// {"action":"allow"|"flag"|"block","reason":"...","ban_seconds":N}.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	log    *slog.Logger // notes about answers; nil: slog.Default()
}

// NewWebhook returns a Webhook posting to url and signing with secret.
// A nil client means a copy of http.DefaultClient; timeouts come from the
// context. Redirects are never followed: a frame goes to the configured URL
// or nowhere, and a 3xx answer is a screening failure.
func NewWebhook(url, secret string, client *http.Client) *Webhook {
	c := http.Client{}
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Webhook{url: url, secret: []byte(secret), client: &c}
}

// insecureHookURL reports why a hook URL sends frames in the clear over a
// network: plain http to a host that is not loopback; "" when it does not.
func insecureHookURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return ""
	}
	host := u.Hostname()
	if host == "localhost" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return ""
	}
	return "plain http to " + host + ": frames, verdicts and their signatures cross the network unencrypted"
}

// Name implements Screener.
func (w *Webhook) Name() string { return "webhook" }

// Screen implements Screener.
func (w *Webhook) Screen(ctx context.Context, f *Frame) (Verdict, error) {
	body, ctype, err := webhookBody(f, time.Now())
	if err != nil {
		return Verdict{}, fmt.Errorf("building webhook request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Verdict{}, fmt.Errorf("building webhook request: %w", err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "onair-moderation/1")
	req.Header.Set(SignatureHeader, Sign(w.secret, body))
	req.Header.Set(TimedSignatureHeader, SignTimed(w.secret, body, time.Now()))
	resp, err := w.client.Do(req)
	if err != nil {
		return Verdict{}, fmt.Errorf("calling moderation webhook: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return Verdict{}, fmt.Errorf("reading moderation webhook answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return Verdict{}, fmt.Errorf("moderation webhook answered %s", resp.Status)
	}
	v, note, err := parseAnswer(data)
	if err != nil {
		return Verdict{}, err
	}
	if note != "" {
		log := w.log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("moderation webhook answer: "+note, "channel", f.Channel, "broadcast", f.BroadcastID, "action", v.Action)
	}
	v.Screener = w.Name()
	return v, nil
}

// webhookBody renders a frame as the multipart form the hook receives.
func webhookBody(f *Frame, now time.Time) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"channel", f.Channel},
		{"broadcast_id", f.BroadcastID},
		{"frame_time", strconv.FormatFloat(f.PTS.Seconds(), 'f', 3, 64)},
		{"keyframe", strconv.FormatBool(f.Keyframe)},
		// The name of frame_time before frames between keyframes were screened.
		{"keyframe_time", strconv.FormatFloat(f.PTS.Seconds(), 'f', 3, 64)},
		{"received_at", f.Received.UTC().Format(time.RFC3339Nano)},
		{"sent_at", now.UTC().Format(time.RFC3339Nano)},
	}
	for _, kv := range fields {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			return nil, "", err
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="frame"; filename="frame.jpg"`)
	h.Set("Content-Type", "image/jpeg")
	part, err := mw.CreatePart(h)
	if err != nil {
		return nil, "", err
	}
	part.Write(f.JPEG)
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// Sign returns the X-Onair-Signature value for body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret (internal/hooksig, shared with the
// events webhook).
func Sign(secret, body []byte) string { return hooksig.Sign(secret, body) }

// VerifySignature reports whether header is a valid signature of body, in
// constant time.
//
// Deprecated: use VerifyTimedSignature, which also refuses replays.
func VerifySignature(secret, body []byte, header string) bool {
	return hooksig.Verify(secret, body, header)
}

// SignTimed returns the X-Onair-Signature-256 value for body sent at now.
func SignTimed(secret, body []byte, now time.Time) string {
	return hooksig.SignTimed(secret, body, now)
}

// VerifyTimedSignature checks an X-Onair-Signature-256 header: the signature
// over its time and body, in constant time, and the time within window of
// now either way (window 0: ReplayWindow). Hooks written in Go can use it,
// for the moderation hook and the events webhook alike.
func VerifyTimedSignature(secret, body []byte, header string, now time.Time, window time.Duration) error {
	return hooksig.VerifyTimed(secret, body, header, now, window)
}
