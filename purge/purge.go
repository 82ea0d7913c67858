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
	"net/http"
	"strings"
	"sync"
	"time"
)

// Header marks a purge request.
const Header = "X-Onair-Purge"

// parallel bounds the requests in flight to one edge.
const parallel = 16

// Edges purges objects from a list of edges.
type Edges struct {
	bases  []string
	client *http.Client
	log    *slog.Logger
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
	return &Edges{bases: trimmed, client: client, log: log}
}

// Result counts what a purge did.
type Result struct {
	Purged int // objects the edge fetched again (and now answers as the origin does)
	Failed int // requests that got no answer or an error status other than 404
}

// Purge asks every edge to drop each path, and returns when all have
// answered or ctx is done.
func (e *Edges) Purge(ctx context.Context, paths []string) Result {
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	for _, base := range e.bases {
		jobs := make(chan string)
		for range min(parallel, len(paths)) {
			wg.Go(func() {
				for p := range jobs {
					err := e.one(ctx, base+p)
					mu.Lock()
					if err != nil {
						res.Failed++
						if res.Failed == 1 {
							e.log.Warn("edge purge failed", "url", base+p, "err", err)
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
func (e *Edges) one(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
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
