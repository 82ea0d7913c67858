package clientip

import (
	"net/http"
	"testing"
)

func TestClient(t *testing.T) {
	trusted, err := ParseNetworks([]string{"10.0.0.0/8, 127.0.0.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(trusted)
	cases := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer: headers ignored", "203.0.113.9:4000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer, no header", "127.0.0.1:4000", nil, "127.0.0.1"},
		{"one proxy", "127.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		// The attack the old setting fell for: the client writes a line, the proxy appends its own.
		{"client line before proxy line", "127.0.0.1:4000", []string{"1.1.1.1", "198.51.100.1"}, "198.51.100.1"},
		{"client value before proxy value", "127.0.0.1:4000", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted proxies", "127.0.0.1:4000", []string{"1.1.1.1, 198.51.100.1, 10.1.2.3"}, "198.51.100.1"},
		{"all trusted: the left-most", "127.0.0.1:4000", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9"},
		{"garbage before a trusted hop", "127.0.0.1:4000", []string{"not-an-ip, 10.1.2.3"}, "10.1.2.3"},
		{"garbage right after the peer", "127.0.0.1:4000", []string{"1.1.1.1, bogus"}, "127.0.0.1"},
		{"empty element", "127.0.0.1:4000", []string{"1.1.1.1,,"}, "127.0.0.1"},
		{"hop with a port", "127.0.0.1:4000", []string{"198.51.100.1:555"}, "198.51.100.1"},
		{"IPv6 hop", "127.0.0.1:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"bracketed IPv6 hop with port", "127.0.0.1:4000", []string{"[2001:db8::7]:80"}, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:127.0.0.1]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"zone refused", "127.0.0.1:4000", []string{"fe80::1%eth0"}, "127.0.0.1"},
		{"trusted IPv6 proxy", "[fd00::1]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"overlong hop", "127.0.0.1:4000", []string{"1111111111111111111111111111111111111111111111111111111111111111111"}, "127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, v := range c.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			got, ok := r.Client(req)
			if !ok || got.String() != c.want {
				t.Fatalf("got %v %v, want %s", got, ok, c.want)
			}
		})
	}
	// Nobody trusted: always the peer.
	req := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{"X-Forwarded-For": {"1.2.3.4"}}}
	if got, _ := (Resolver{}).Client(req); got.String() != "127.0.0.1" {
		t.Fatalf("zero resolver: %v", got)
	}
	if _, ok := r.Client(&http.Request{RemoteAddr: "pipe"}); ok {
		t.Fatal("a non-address peer resolved")
	}
}

func TestParseNetworks(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/8", "fe80::1%eth0", "1.2.3"} {
		if _, err := ParseNetworks([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	got, err := ParseNetworks([]string{"10.1.2.3/8", " ::1 ", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "10.0.0.0/8" || got[1].String() != "::1/128" {
		t.Fatalf("got %v", got)
	}
}

func FuzzClient(f *testing.F) {
	f.Add("127.0.0.1:1", "1.1.1.1, 10.0.0.1")
	f.Add("[::1]:1", "[2001:db8::1]:80,,garbage")
	trusted, _ := ParseNetworks([]string{"10.0.0.0/8", "127.0.0.0/8", "::1"})
	r := NewResolver(trusted)
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		a, ok := r.Client(req)
		if ok && !a.IsValid() {
			t.Fatalf("ok with an invalid address for %q %q", remote, xff)
		}
	})
}
