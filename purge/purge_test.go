package purge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// edgeServer is a real HTTP server standing for one cache: it records the
// purge requests it gets and answers each with status.
type edgeServer struct {
	mu     sync.Mutex
	got    []string // path and Host of each request with the purge header
	status int
}

func (es *edgeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(Header) == "1" {
		es.mu.Lock()
		es.got = append(es.got, r.URL.Path+" "+r.Host)
		es.mu.Unlock()
	}
	w.WriteHeader(es.status)
}

func (es *edgeServer) requests() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	out := slices.Clone(es.got)
	slices.Sort(out)
	return out
}

// serveOn runs es on addr until the test ends.
func serveOn(t *testing.T, addr string, es *edgeServer) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: es}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln
}

// Every address an edge's name resolves to is a cache of its own, and each
// is asked to drop every path, with the Host the edge was named by.
func TestPurgeEveryAddressOfAName(t *testing.T) {
	a := &edgeServer{status: http.StatusNotFound}
	ln := serveOn(t, "127.0.0.1:0", a)
	port := ln.Addr().(*net.TCPAddr).Port
	b := &edgeServer{status: http.StatusOK}
	serveOn(t, fmt.Sprintf("127.0.0.2:%d", port), b)

	e := New([]string{fmt.Sprintf("http://edges.test:%d/", port)}, nil, slog.Default())
	var asked []string
	e.lookup = func(_ context.Context, host string) ([]string, error) {
		asked = append(asked, host)
		return []string{"127.0.0.1", "127.0.0.2"}, nil
	}
	res := e.Purge(context.Background(), []string{"/hls/ch/a.m4s", "/hls/ch/stream.m3u8"})

	if !slices.Equal(asked, []string{"edges.test"}) {
		t.Errorf("looked up %q, want edges.test once", asked)
	}
	host := fmt.Sprintf("edges.test:%d", port)
	want := []string{"/hls/ch/a.m4s " + host, "/hls/ch/stream.m3u8 " + host}
	for name, es := range map[string]*edgeServer{"127.0.0.1": a, "127.0.0.2": b} {
		if got := es.requests(); !slices.Equal(got, want) {
			t.Errorf("edge %s got %q, want %q", name, got, want)
		}
	}
	if res != (Result{Purged: 4}) {
		t.Errorf("result %+v, want 4 purged (a 404 is a purge: the object is gone there)", res)
	}
}

func TestPurgeEdgesByAddressAndFailures(t *testing.T) {
	ok := &edgeServer{status: http.StatusOK}
	okAddr := serveOn(t, "127.0.0.1:0", ok).Addr().String()
	broken := &edgeServer{status: http.StatusInternalServerError}
	brokenAddr := serveOn(t, "127.0.0.1:0", broken).Addr().String()

	cases := []struct {
		name   string
		base   string
		lookup func(context.Context, string) ([]string, error)
		want   Result
	}{
		{"an address is not looked up", "http://" + okAddr, nil, Result{Purged: 1}},
		{"an edge answering 500 is a failure", "http://" + brokenAddr, nil, Result{Failed: 1}},
		{"a name that does not resolve is tried as it is, and fails", "http://no-such-edge.invalid:1",
			func(context.Context, string) ([]string, error) { return nil, errors.New("no such host") }, Result{Failed: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New([]string{c.base}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			e.lookup = func(ctx context.Context, host string) ([]string, error) {
				if c.lookup == nil {
					t.Errorf("looked up %s", host)
					return nil, errors.New("unexpected lookup")
				}
				return c.lookup(ctx, host)
			}
			if got := e.Purge(context.Background(), []string{"/hls/ch/x.m4s"}); got != c.want {
				t.Errorf("result %+v, want %+v", got, c.want)
			}
		})
	}
}
