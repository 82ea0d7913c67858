package moderation

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"time"
)

// SignatureHeader carries the HMAC-SHA256 of a webhook request body.
const SignatureHeader = "X-Onair-Signature"

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
}

// NewWebhook returns a Webhook posting to url and signing with secret.
// A nil client means http.DefaultClient; timeouts come from the context.
func NewWebhook(url, secret string, client *http.Client) *Webhook {
	if client == nil {
		client = http.DefaultClient
	}
	return &Webhook{url: url, secret: []byte(secret), client: client}
}

// Name implements Screener.
func (w *Webhook) Name() string { return "webhook" }

// webhookAnswer is the JSON a hook returns.
type webhookAnswer struct {
	Action     Action  `json:"action"`
	Reason     string  `json:"reason"`
	BanSeconds float64 `json:"ban_seconds"`
}

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
	if len(data) > maxAnswer {
		return Verdict{}, errors.New("moderation webhook answer too large")
	}
	var a webhookAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return Verdict{}, fmt.Errorf("parsing moderation webhook answer: %w", err)
	}
	switch a.Action {
	case Allow, Flag, Block:
	default:
		return Verdict{}, fmt.Errorf("moderation webhook answered unknown action %q", a.Action)
	}
	v := Verdict{Action: a.Action, Reason: a.Reason, Screener: w.Name()}
	if a.BanSeconds > 0 {
		v.Ban = time.Duration(a.BanSeconds * float64(time.Second))
	}
	return v, nil
}

// webhookBody renders a frame as the multipart form the hook receives.
func webhookBody(f *Frame, now time.Time) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"channel", f.Channel},
		{"broadcast_id", f.BroadcastID},
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
// HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether header is a valid signature of body, in
// constant time; hooks written in Go can use it.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}
