package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// errAuthRefused marks a webhook answer that refuses the key (4xx), as opposed
// to a webhook that failed; only refusals count towards an address's lockout.
var errAuthRefused = errors.New("key refused")

// authRequest is what the publish-auth webhook receives.
type authRequest struct {
	Channel    string `json:"channel"`
	Key        string `json:"key"`
	RemoteAddr string `json:"remote_addr"`
	App        string `json:"app"`
}

// authResponse is what a 2xx webhook answer may carry: the channel to publish
// on, for publishers that send only a key.
type authResponse struct {
	Channel string `json:"channel"`
}

// callAuthWebhook asks the webhook to decide a publish. Any 2xx accepts; it
// returns the channel named in the answer, if any.
func (h *Hub) callAuthWebhook(ctx context.Context, app, channel, key, remote string) (string, error) {
	body, err := json.Marshal(authRequest{Channel: channel, Key: key, RemoteAddr: remote, App: app})
	if err != nil {
		return "", fmt.Errorf("encode auth request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.opts.AuthWebhook, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("build auth request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("call auth webhook: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 && resp.StatusCode <= 499 {
		return "", fmt.Errorf("%w: auth webhook answered %s", errAuthRefused, resp.Status)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("auth webhook answered %s", resp.Status)
	}
	var ar authResponse
	if len(bytes.TrimSpace(data)) > 0 && json.Unmarshal(data, &ar) == nil {
		return ar.Channel, nil
	}
	return "", nil
}
