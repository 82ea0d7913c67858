package hooksig

import (
	"testing"
	"time"
)

func TestSignAndVerify(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"type":"publish_started"}`)
	at := time.Unix(1764547200, 0)
	h := SignTimed(secret, body, at)
	// HMAC-SHA256("k", "1764547200." + body), computed independently with openssl.
	if want := "t=1764547200,v1=59c2910ac06df2b052c69430084f8e3df057b163d73b8c57471e576e224f1108"; h != want {
		t.Fatalf("SignTimed = %s, want %s", h, want)
	}
	if err := VerifyTimed(secret, body, h, at.Add(ReplayWindow), 0); err != nil {
		t.Errorf("valid signature refused: %v", err)
	}
	for name, err := range map[string]error{
		"other body":   VerifyTimed(secret, []byte("{}"), h, at, 0),
		"other secret": VerifyTimed([]byte("j"), body, h, at, 0),
		"replayed":     VerifyTimed(secret, body, h, at.Add(ReplayWindow+time.Second), 0),
		"malformed":    VerifyTimed(secret, body, "v1=00", at, 0),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !Verify(secret, body, Sign(secret, body)) || Verify(secret, []byte("x"), Sign(secret, body)) {
		t.Error("Sign/Verify disagree")
	}
}
