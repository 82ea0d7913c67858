package segmenter

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Errors the origin maps to HTTP statuses.
var (
	errNotFound   = errors.New("no such object")
	errBadRequest = errors.New("bad request")
	errTimeout    = errors.New("timed out waiting for the object")
	errEnded      = errors.New("stream ended while waiting")
)

// fetchResult is what gohlslib's handler answered for one object.
type fetchResult struct {
	status int
	header http.Header
	body   []byte
}

type fetchCall struct {
	done chan struct{}
	res  fetchResult
}

// fetchGroup collapses concurrent requests for one object (and one blocking
// query) into a single call into the muxer, the way a CDN collapses requests
// to the origin: a hundred players waiting for the next part cost one waiter.
type fetchGroup struct {
	mu    sync.Mutex
	calls map[string]*fetchCall
}

// recorder captures a handler's answer in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// fetch asks the muxer for name with rawQuery and waits at most wait for the
// answer. gohlslib holds playlist and preload-hint requests until the content
// exists and has no deadline of its own, so the call runs in a goroutine owned
// by the stream (close releases it) and later requests for the same key join it.
func (st *stream) fetch(ctx context.Context, name, rawQuery string, wait time.Duration) (fetchResult, error) {
	key := name + "?" + rawQuery
	st.fetches.mu.Lock()
	if st.fetches.calls == nil {
		st.fetches.calls = make(map[string]*fetchCall)
	}
	c := st.fetches.calls[key]
	if c == nil {
		st.mu.Lock()
		if st.closed {
			st.mu.Unlock()
			st.fetches.mu.Unlock()
			return fetchResult{}, errNotFound
		}
		st.wg.Add(1)
		st.mu.Unlock()
		c = &fetchCall{done: make(chan struct{})}
		st.fetches.calls[key] = c
		go st.call(key, c, name, rawQuery)
	}
	st.fetches.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.res, nil
	case <-timer.C:
		return fetchResult{}, errTimeout
	case <-ctx.Done():
		return fetchResult{}, ctx.Err()
	case <-st.closedCh:
		return fetchResult{}, errNotFound
	case <-st.endedCh:
		// The muxer will not produce what we wait for; the caller serves the
		// final copy instead. A call that already finished still wins.
		select {
		case <-c.done:
			return c.res, nil
		default:
			return fetchResult{}, errEnded
		}
	}
}

func (st *stream) call(key string, c *fetchCall, name, rawQuery string) {
	defer st.wg.Done()
	rec := &recorder{header: make(http.Header)}
	req := &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Path: "/" + name, RawQuery: rawQuery},
		Header: make(http.Header),
	}
	st.mux.Handle(rec, req.WithContext(context.Background()))
	status := rec.status
	if status == 0 {
		status = http.StatusNotFound // gohlslib writes nothing for names it does not know
	}
	c.res = fetchResult{status: status, header: rec.header, body: rec.body.Bytes()}
	st.fetches.mu.Lock()
	delete(st.fetches.calls, key)
	st.fetches.mu.Unlock()
	close(c.done)
}
