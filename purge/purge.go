// Package purge tells CDN edges in front of onair to drop what they hold of
// a taken-down broadcast, so that nobody is served it from a cache.
//
// An edge is asked with a request for each object's own path, carrying
// X-Onair-Purge: 1. The edge template in deploy/nginx answers such a request
// from onair's address by fetching the object again, bypassing its cache
// (proxy_cache_bypass); the origin answers 404 for a taken-down broadcast,
// and that 404 replaces the cached object. This needs no cache-purge module,
// so it works with the stock nginx image. Other CDNs purge through their own
// APIs (see docs/cdn.md).
package purge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Header marks a purge request.
const Header = "X-Onair-Purge"

// parallel bounds the requests in flight to one edge.
const parallel = 16

// Edges purges objects from a list of edges. An edge named by a host name
// is every address the name resolves to when a purge starts: a Kubernetes
// Service of several edge pods (headless), or any name in front of several
// caches, each of which holds its own copy.
type Edges struct {
	bases  []string
	client *http.Client
	log    *slog.Logger
	lookup func(ctx context.Context, host string) ([]string, error)
}

// edge is one cache to purge: where to send the requests, and the Host
// they carry (the name the edge was given by).
type edge struct {
	base, host string
}

// New returns Edges for the given base URLs (scheme and host, e.g.
// "http://edge:80"). A nil client gets one with a 2 s timeout per request.
func New(bases []string, client *http.Client, log *slog.Logger) *Edges {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	trimmed := make([]string, len(bases))
	for i, b := range bases {
		trimmed[i] = strings.TrimRight(b, "/")
	}
	return &Edges{bases: trimmed, client: client, log: log, lookup: net.DefaultResolver.LookupHost}
}

// edges resolves the configured bases into the caches to purge. A name that
// does not resolve is kept as it is (its requests then fail and are counted).
func (e *Edges) edges(ctx context.Context) []edge {
	var out []edge
	for _, base := range e.bases {
		u, err := url.Parse(base)
		if err != nil || u.Hostname() == "" || net.ParseIP(u.Hostname()) != nil {
			out = append(out, edge{base: base})
			continue
		}
		addrs, err := e.lookup(ctx, u.Hostname())
		if err != nil || len(addrs) == 0 {
			out = append(out, edge{base: base})
			continue
		}
		for _, a := range addrs {
			v := *u
			v.Host = a
			if port := u.Port(); port != "" {
				v.Host = net.JoinHostPort(a, port)
			} else if strings.Contains(a, ":") {
				v.Host = "[" + a + "]"
			}
			out = append(out, edge{base: v.String(), host: u.Host})
		}
	}
	return out
}

// Result counts what a purge did.
type Result struct {
	Purged int // objects the edge fetched again (and now answers as the origin does)
	Failed int // requests that got no answer or an error status other than 404
}

// Purge asks every edge (every address of an edge's name) to drop each
// path, and returns when all have answered or ctx is done.
func (e *Edges) Purge(ctx context.Context, paths []string) Result {
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	for _, ed := range e.edges(ctx) {
		jobs := make(chan string)
		for range min(parallel, len(paths)) {
			wg.Go(func() {
				for p := range jobs {
					err := e.one(ctx, ed, p)
					mu.Lock()
					if err != nil {
						res.Failed++
						if res.Failed == 1 {
							e.log.Warn("edge purge failed", "url", ed.base+p, "err", err)
						}
					} else {
						res.Purged++
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			defer close(jobs)
			for _, p := range paths {
				select {
				case jobs <- p:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	return res
}

// one purges one object from one edge.
func (e *Edges) one(ctx context.Context, ed edge, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ed.base+path, nil)
	if err != nil {
		return err
	}
	if ed.host != "" {
		req.Host = ed.host
	}
	req.Header.Set(Header, "1")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("edge answered %s", resp.Status)
	}
	return nil
}
