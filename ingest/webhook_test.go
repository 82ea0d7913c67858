package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAuthWebhook(t *testing.T) {
	var got authRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		switch got.Key {
		case "good":
			w.WriteHeader(http.StatusNoContent)
		case "assign":
			_, _ = w.Write([]byte(`{"channel":"assigned"}`))
		case "bad-channel":
			_, _ = w.Write([]byte(`{"channel":"Not Valid"}`))
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	h, err := NewHub(Options{AuthWebhook: srv.URL, Channels: []ChannelConfig{{Name: "known"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want, key, wantCh, reason string
	}{
		{"accepts with named channel", "known", "good", "known", ""},
		{"channel from the answer", "", "assign", "assigned", ""},
		{"refused", "known", "nope", "", "webhook"},
		{"no channel at all", "", "good", "", "webhook"},
		{"invalid channel", "", "bad-channel", "", "webhook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, ref := h.authorize(context.Background(), "live", tt.want, tt.key, "1.2.3.4:5")
			if tt.reason != "" {
				if ref == nil || ref.reason != tt.reason {
					t.Fatalf("refusal %+v, want %s", ref, tt.reason)
				}
				return
			}
			if ref != nil || ch == nil || ch.name != tt.wantCh {
				t.Fatalf("channel %v refusal %+v", ch, ref)
			}
			if got.App != "live" || got.RemoteAddr != "1.2.3.4:5" || got.Key != tt.key || got.Channel != tt.want {
				t.Fatalf("request %+v", got)
			}
		})
	}
	if _, ok := h.Channel("assigned"); !ok {
		t.Fatal("channel assigned by the webhook not registered")
	}
	srv.Close()
	if _, ref := h.authorize(context.Background(), "live", "known", "good", "x"); ref == nil {
		t.Fatal("webhook down: publish accepted")
	}
}
