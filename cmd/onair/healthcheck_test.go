package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// onair healthcheck exits 0 only for a 2xx answer: a draining node (503), a
// redirect, a dead port and a node too slow to answer all fail the check.
func TestHealthcheckCommand(t *testing.T) {
	block := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready\n")) })
	mux.HandleFunc("/draining", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/readyz", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-block })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(block) // before Close, which waits for the slow handler
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{srv.URL + "/readyz"}, 0, "200 OK"},
		{[]string{srv.URL + "/draining"}, 1, "503"},
		{[]string{srv.URL + "/moved"}, 1, "302"},
		{[]string{dead.URL + "/readyz"}, 1, "refused"},
		{[]string{"ftp://127.0.0.1/readyz"}, 1, "not an http(s) URL"},
		{[]string{srv.URL, srv.URL}, 1, "usage"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"healthcheck"}, c.args...), &out, &errOut); code != c.code {
			t.Errorf("onair healthcheck %v: exit %d, want %d (%s%s)", c.args, code, c.code, out.String(), errOut.String())
		}
		if !strings.Contains(out.String()+errOut.String(), c.out) {
			t.Errorf("onair healthcheck %v: said %q, want %q in it", c.args, out.String()+errOut.String(), c.out)
		}
	}

	start := time.Now()
	if _, err := healthcheck(srv.URL+"/slow", 100*time.Millisecond); err == nil {
		t.Error("a node that does not answer within the timeout passed the check")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the check waited %v for a 100ms timeout", d)
	}
}

// Without a URL the check asks /readyz where the node's settings say it listens.
func TestHealthcheckDefaultURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/readyz",
		":9090":          "http://127.0.0.1:9090/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"[::]:8082":      "http://127.0.0.1:8082/readyz",
		"10.1.2.3:8080":  "http://10.1.2.3:8080/readyz",
		"[fd00::1]:8080": "http://[fd00::1]:8080/readyz",
		"nonsense":       "http://127.0.0.1:8080/readyz",
	} {
		if got := healthcheckURL(addr); got != want {
			t.Errorf("http-addr %q: %s, want %s", addr, got, want)
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	t.Setenv("ONAIR_CONFIG", "")
	t.Setenv("ONAIR_HTTP_ADDR", strings.TrimPrefix(srv.URL, "http://"))
	var out, errOut bytes.Buffer
	if code := run([]string{"healthcheck"}, &out, &errOut); code != 0 {
		t.Fatalf("onair healthcheck with ONAIR_HTTP_ADDR=%s: exit %d: %s", srv.URL, code, errOut.String())
	}
}
