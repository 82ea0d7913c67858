package chat

import (
	"errors"
	"testing"
	"time"
)

// Nonsense limits are refused, naming the field, instead of being replaced by defaults.
func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	cases := []struct {
		field string
		set   func(*Options)
	}{
		{"HistoryLen", func(o *Options) { o.HistoryLen = 0 }},
		{"HistoryLen", func(o *Options) { o.HistoryLen = 1 << 30 }},
		{"MaxMessageLen", func(o *Options) { o.MaxMessageLen = -1 }},
		{"MaxMessageLen", func(o *Options) { o.MaxMessageLen = 4000 }}, // does not fit the 4096-byte frame
		{"ConnMessages", func(o *Options) { o.ConnMessages = 0 }},
		{"ConnWindow", func(o *Options) { o.ConnWindow = 0 }},
		{"IPMessages", func(o *Options) { o.IPMessages = -5 }},
		{"IPWindow", func(o *Options) { o.IPWindow = 48 * time.Hour }},
		{"ConnsPerIP", func(o *Options) { o.ConnsPerIP = 0 }},
		{"UpgradesPerMinute", func(o *Options) { o.UpgradesPerMinute = -1 }},
		{"NameMaxLen", func(o *Options) { o.NameMinLen, o.NameMaxLen = 10, 5 }},
		{"MaxQueueBytes", func(o *Options) { o.MaxQueueBytes = 10 }},
		{"PongWait", func(o *Options) { o.PongWait = o.PingInterval }},
		{"PresenceInterval", func(o *Options) { o.PresenceInterval = 0 }},
		{"RoomTTL", func(o *Options) { o.RoomTTL = 0 }},
		{"FilterMode", func(o *Options) { o.FilterMode = "shout" }},
		{"AllowedOrigins", func(o *Options) { o.AllowedOrigins = []string{"https://example.com/path"} }},
		{"AllowedOrigins", func(o *Options) { o.AllowedOrigins = []string{"example.com"} }},
		{"SocketSendBuffer", func(o *Options) { o.SocketSendBuffer = -1 }},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.set(&o)
		err := o.Validate()
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%s: got %v", c.field, err)
		}
		if _, err := NewServer(o); err == nil {
			t.Errorf("%s: NewServer accepted it", c.field)
		}
	}
	// Every problem is reported at once.
	o := DefaultOptions()
	o.HistoryLen, o.ConnMessages = 0, 0
	var n int
	for _, e := range o.Validate().(interface{ Unwrap() []error }).Unwrap() {
		if _, ok := e.(*OptionError); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d errors, want 2", n)
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://Example.com/":        "https://example.com",
		"http://example.com:80/watch": "http://example.com",
		"http://example.com:8081":     "http://example.com:8081",
		"ftp://example.com":           "",
		"":                            "",
	} {
		if got := OriginOf(in); got != want {
			t.Errorf("OriginOf(%q) = %q, want %q", in, got, want)
		}
	}
}
