package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "onair.yaml")
	os.WriteFile(file, []byte("http-addr: \":9000\"\nrtmp-addr: \":2000\"\nhls-part-duration: 300ms\nchannels: [\"a:aaaaaaaaaa\", \"b:bbbbbbbbbb\"]\nmoderation-gate: false\n"), 0o644)
	env := map[string]string{"ONAIR_RTMP_ADDR": ":3000", "ONAIR_HLS_SEGMENT_COUNT": "9"}

	cfg, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--config", file, "--hls-segment-count", "5"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file over default", cfg.HTTPAddr, ":9000"},
		{"env over file", cfg.RTMPAddr, ":3000"},
		{"flag over env", cfg.HLSSegmentCount, 5},
		{"duration from file", cfg.HLSPartDuration, 300 * time.Millisecond},
		{"bool from file", cfg.ModerationGate, false},
		{"list from file", strings.Join(cfg.Channels, ","), "a:aaaaaaaaaa,b:bbbbbbbbbb"},
		{"default kept", cfg.HLSVariant, "lowlatency"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// trusted-proxies and chat-allowed-origins take a comma-separated list in every form.
func TestLoadConfigChatLists(t *testing.T) {
	dir := t.TempDir()
	scalar := filepath.Join(dir, "scalar.yaml")
	os.WriteFile(scalar, []byte("trusted-proxies: \"10.0.0.0/8, 127.0.0.1\"\n"), 0o644)
	list := filepath.Join(dir, "list.yaml")
	os.WriteFile(list, []byte("trusted-proxies: [10.0.0.0/8, 127.0.0.1]\n"), 0o644)
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flag":        {[]string{"--trusted-proxies", "10.0.0.0/8,127.0.0.1"}, nil},
		"env":         {nil, map[string]string{"ONAIR_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}},
		"yaml scalar": {[]string{"--config", scalar}, nil},
		"yaml list":   {[]string{"--config", list}, nil},
	} {
		cfg, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), c.args, func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		o := chatOptions(cfg)
		if len(o.TrustedProxies) != 2 || o.TrustedProxies[0].String() != "10.0.0.0/8" || o.TrustedProxies[1].String() != "127.0.0.1/32" {
			t.Errorf("%s: trusted proxies %v", name, o.TrustedProxies)
		}
	}
	// The chat origin defaults to the public URL's; a list replaces it.
	cfg, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--public-url", "https://tv.example/"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if o := chatOptions(cfg).AllowedOrigins; len(o) != 1 || o[0] != "https://tv.example" {
		t.Errorf("default origins %v", o)
	}
	cfg, err = loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--public-url", "https://tv.example/", "--chat-allowed-origins", "https://a.example,https://b.example"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if o := chatOptions(cfg).AllowedOrigins; strings.Join(o, " ") != "https://a.example https://b.example" {
		t.Errorf("origins %v", o)
	}
}

func TestLoadConfigListFlagsReplace(t *testing.T) {
	env := map[string]string{"ONAIR_CHANNEL": "x:xxxxxxxxxx"}
	cfg, err := loadConfig(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--channel", "a:aaaaaaaaaa", "--channel", "a:cccccccccc"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	names, keys, err := cfg.channelKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "a" || len(keys["a"]) != 2 {
		t.Fatalf("got %v %v, want channel a with two keys", names, keys)
	}
}

// Invalid configuration stops start-up with a message naming the key, and never echoes a key.
func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad variant", []string{"--hls-variant", "dash"}, nil, "hls-variant"},
		{"bad duration flag", []string{"--hls-segment-duration", "soon"}, nil, "hls-segment-duration"},
		{"part longer than segment", []string{"--hls-part-duration", "3s"}, nil, "hls-part-duration"},
		{"too few segments", []string{"--hls-segment-count", "2"}, nil, "hls-segment-count"},
		{"bad env", nil, map[string]string{"ONAIR_HLS_SEGMENT_COUNT": "many"}, "hls-segment-count"},
		{"bad channel", []string{"--channel", "Bad Name:secretsecret"}, nil, "channel"},
		{"short key", []string{"--channel", "ok:short"}, nil, "channel"},
		{"bad webhook", []string{"--moderation-webhook", "ftp://x"}, nil, "moderation-webhook"},
		{"bad redis", []string{"--redis-url", "localhost:6379"}, nil, "redis-url"},
		{"unknown file key", []string{"--config", write("rtmp-adr: x\n")}, nil, "rtmp-adr"},
		{"bad file value", []string{"--config", write("hls-segment-count: lots\n")}, nil, "hls-segment-count"},
		{"failure policy", []string{"--moderation-failure-policy", "maybe"}, nil, "moderation-failure-policy"},
		{"chat rate zero", []string{"--chat-rate-messages", "0"}, nil, "chat-rate-messages"},
		{"chat conns negative", []string{"--chat-conns-per-ip", "-1"}, nil, "chat-conns-per-ip"},
		{"chat history absurd", []string{"--chat-history", "100000000"}, nil, "chat-history"},
		{"chat window zero", nil, map[string]string{"ONAIR_CHAT_RATE_WINDOW": "0s"}, "chat-rate-window"},
		{"chat room ttl zero", []string{"--chat-room-ttl", "0s"}, nil, "chat-room-ttl"},
		{"chat upgrades zero", []string{"--chat-upgrades-per-ip", "0"}, nil, "chat-upgrades-per-ip"},
		{"chat origin with a path", []string{"--chat-allowed-origins", "https://example.com/watch"}, nil, "chat-allowed-origins"},
		{"old proxy setting", nil, map[string]string{"ONAIR_CHAT_TRUST_PROXY": "true"}, "trusted-proxies"},
		{"bad proxy network", []string{"--trusted-proxies", "10.0.0.0/8,proxy.local"}, nil, "trusted-proxies"},
		{"zero connection cap", []string{"--rtmp-max-conns", "0"}, nil, "rtmp-max-conns"},
		{"zero per-address cap", []string{"--rtmp-conns-per-ip", "0"}, nil, "rtmp-conns-per-ip"},
		{"no publish time", []string{"--rtmp-publish-timeout", "0s"}, nil, "rtmp-publish-timeout"},
		{"rtmps without a certificate", []string{"--rtmps-addr", ":1936"}, nil, "invalid setting tls-cert: required with rtmps-addr"},
		{"certificate without its key", []string{"--rtmps-addr", ":1936", "--tls-cert", "c.pem"}, nil, "invalid setting tls-key: required with tls-cert"},
		{"key without its certificate", nil, map[string]string{"ONAIR_TLS_KEY": "k.pem"}, "invalid setting tls-cert: required with tls-key"},
		{"rtmps on the rtmp port", []string{"--rtmps-addr", ":1935", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, nil, "invalid setting rtmps-addr"},
		{"negative idle", []string{"--rtmp-idle-timeout", "-1s"}, nil, "rtmp-idle-timeout"},
		{"max ban below the default ban", []string{"--moderation-max-ban", "1m"}, nil, "moderation-max-ban"},
		{"negative decoders", nil, map[string]string{"ONAIR_MODERATION_DECODERS": "-1"}, "moderation-decoders"},
		{"no decode queue", []string{"--moderation-decode-queue", "0"}, nil, "moderation-decode-queue"},
		{"decoder idle", []string{"--config", write("moderation-decoder-idle: 0s\n")}, nil, "moderation-decoder-idle"},
		{"events webhook unsigned", []string{"--events-webhook", "https://hooks.example.com/e"}, nil, "events-webhook-secret"},
		{"bad events webhook", []string{"--events-webhook", "ftp://x", "--events-webhook-secret", "s"}, nil, "events-webhook"},
		{"no events queue", []string{"--events-queue", "0"}, nil, "events-queue"},
		{"events retry too short", []string{"--events-retry-max", "10ms"}, nil, "events-retry-max"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			_, err := loadConfig(fs, c.args, func(k string) string { return c.env[k] })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one naming %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secretsecret") {
				t.Fatalf("error leaks a stream key: %v", err)
			}
		})
	}
}

func TestStateIsKeptAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.DefaultKey) < 16 || first.Secret == "" || first.AdminToken == "" {
		t.Fatalf("incomplete state %+v", first)
	}
	second, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("state changed across restarts: %+v then %+v", first, second)
	}
	info, err := os.Stat(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		t.Fatalf("state file is readable by others: %v", info.Mode())
	}
}

func TestConfigCheck(t *testing.T) {
	cases := []struct {
		name string
		file string
		want []string // one problem line each, by substrings; none: ok
	}{
		{"good", "hls-variant: fmp4\nchannels:\n  - \"alice:alice-key-123\"\n", nil},
		{"every problem at once", "hls-variant: dash\nrtmp-adr: \":1935\"\nmoderation-interval: -2s\n", []string{
			`invalid setting hls-variant: "dash" is not one of lowlatency, fmp4, mpegts`,
			`unknown key "rtmp-adr" (did you mean "rtmp-addr"?)`,
			`invalid setting moderation-interval: must be positive — moderation-interval: how often`,
		}},
		{"underscores", "moderation_sample: any\n", []string{`unknown key "moderation_sample" (did you mean "moderation-sample"?)`}},
		{"nothing near", "colour: blue\n", []string{`unknown key "colour"`}},
		{"bad value", "http-idle-timeout: banana\n", []string{`invalid setting http-idle-timeout: want a duration`}},
		{"not YAML", "hls-variant: [\n", []string{"yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "onair.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := configCommand([]string{"check", path}, &out)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(tc.want) == 0 {
				if err != nil || out.String() != path+": ok\n" {
					t.Fatalf("a good file: %v\n%s", err, out.String())
				}
				return
			}
			if err == nil || len(lines) != len(tc.want) {
				t.Fatalf("want %d problems and an error, got %v:\n%s", len(tc.want), err, out.String())
			}
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					found = found || (strings.HasPrefix(l, path+": ") && strings.Contains(l, w))
				}
				if !found {
					t.Errorf("no line with %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(tc.name, "nothing near") && strings.Contains(out.String(), "did you mean") {
				t.Errorf("a suggestion for a key nothing is near:\n%s", out.String())
			}
		})
	}
}
