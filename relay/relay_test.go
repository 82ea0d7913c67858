package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onairhq/onair/internal/metricstest"
)

// holderSrv is a real HTTP server playing the node that holds a channel: it
// answers what the test put at each path, counts requests per path and query,
// and can hold requests until released.
type holderSrv struct {
	srv *httptest.Server

	mu          sync.Mutex
	objs        map[string]reply // by path
	hits        map[string]int   // by path?query
	relayHeader map[string]int   // X-Onair-Relay values seen
	block       chan struct{}    // while set, requests wait for it to close
	arrived     chan string      // told of each request that waits
}

type reply struct {
	status int
	header map[string]string
	body   string
}

func newHolder(t *testing.T) *holderSrv {
	h := &holderSrv{objs: map[string]reply{}, hits: map[string]int{}, relayHeader: map[string]int{}, arrived: make(chan string, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *holderSrv) serve(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path
	if r.URL.RawQuery != "" {
		key += "?" + r.URL.RawQuery
	}
	h.mu.Lock()
	h.hits[key]++
	h.relayHeader[r.Header.Get(Header)]++
	block := h.block
	rep, ok := h.objs[r.URL.Path]
	h.mu.Unlock()
	if block != nil {
		h.arrived <- key
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "not here", http.StatusNotFound)
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if rep.status == 0 {
		rep.status = http.StatusOK
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (h *holderSrv) put(path string, rep reply) {
	h.mu.Lock()
	h.objs[path] = rep
	h.mu.Unlock()
}

func (h *holderSrv) del(path string) {
	h.mu.Lock()
	delete(h.objs, path)
	h.mu.Unlock()
}

func (h *holderSrv) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[key]
}

func (h *holderSrv) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.hits {
		n += c
	}
	return n
}

// hold makes requests wait until the returned func is called.
func (h *holderSrv) hold() (release func()) {
	c := make(chan struct{})
	h.mu.Lock()
	h.block = c
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.block = nil
			h.mu.Unlock()
			close(c)
		})
	}
}

// locator is an Options.Locate the test steers.
type locator struct {
	mu    sync.Mutex
	h     Holder
	ok    bool
	err   error
	calls int
}

func (l *locator) set(h Holder, ok bool, err error) {
	l.mu.Lock()
	l.h, l.ok, l.err = h, ok, err
	l.mu.Unlock()
}

func (l *locator) locate(_ context.Context, channel string) (Holder, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	return l.h, l.ok, l.err
}

func (l *locator) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

const self = "node-origin"

// setup returns a relay of channels held by h (node-h), served by a real HTTP
// server, and its locator.
func setup(t *testing.T, h *holderSrv, opts Options) (*Relay, *httptest.Server, *locator) {
	t.Helper()
	loc := &locator{}
	if h != nil {
		loc.set(Holder{Node: "node-h", Addr: h.srv.URL + "/"}, true, nil)
	}
	opts.Locate = loc.locate
	opts.Self = self
	if opts.Hold == 0 {
		opts.Hold = 20 * time.Millisecond
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rl := New(opts)
	srv := httptest.NewServer(rl)
	t.Cleanup(func() {
		srv.Close()
		rl.opts.Client.CloseIdleConnections()
	})
	return rl, srv, loc
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, hdr map[string]string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, url string) answer { t.Helper(); return do(t, http.MethodGet, url, nil) }

// waitFor polls cond every 10 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const segPath = "/hls/ch/abcd1234_11.m4s"

func TestKeptForMaxAge(t *testing.T) {
	cases := []struct {
		cc       string
		status   int
		wantHits int // holder requests for two GETs in a row
	}{
		{"public, max-age=60", 200, 1},
		{"public, max-age=86400, immutable", 200, 1},
		{"Public, Max-Age=60", 200, 1},
		{"public, max-age=1", 404, 1}, // a holder's 404 is kept as long as it says
		{"no-store", 200, 2},
		{"no-cache", 200, 2},
		{"private, max-age=60", 200, 2},
		{"max-age=60, no-store", 200, 2},
		{"public, max-age=0", 200, 2},
		{"max-age=x", 200, 2},
		{"", 200, 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q %d", tc.cc, tc.status), func(t *testing.T) {
			h := newHolder(t)
			h.put(segPath, reply{status: tc.status, header: map[string]string{"Cache-Control": tc.cc}, body: "segment-11"})
			rl, srv, _ := setup(t, h, Options{})
			for i := 0; i < 2; i++ {
				a := get(t, srv.URL+segPath)
				if a.status != tc.status || a.body != "segment-11" {
					t.Fatalf("GET %d = %d %q, want %d segment-11", i+1, a.status, a.body, tc.status)
				}
			}
			if n := h.count(segPath); n != tc.wantHits {
				t.Errorf("holder asked %d times for two GETs, want %d", n, tc.wantHits)
			}
			if got, want := rl.hits.Load(), int64(2-tc.wantHits); got != want {
				t.Errorf("hits = %d, want %d", got, want)
			}
		})
	}
}

func TestRefetchedAfterMaxAge(t *testing.T) {
	h := newHolder(t)
	h.put(segPath, reply{header: map[string]string{"Cache-Control": "public, max-age=1"}, body: "v1"})
	_, srv, _ := setup(t, h, Options{})
	start := time.Now()
	if a := get(t, srv.URL+segPath); a.body != "v1" {
		t.Fatalf("first GET = %q", a.body)
	}
	h.put(segPath, reply{header: map[string]string{"Cache-Control": "public, max-age=1"}, body: "v2"})
	if a := get(t, srv.URL+segPath); a.body != "v1" || h.count(segPath) != 1 {
		t.Fatalf("GET within max-age = %q after %d holder requests, want the kept v1", a.body, h.count(segPath))
	}
	waitFor(t, 5*time.Second, "never refetched after max-age", func() bool { return get(t, srv.URL+segPath).body == "v2" })
	if d := time.Since(start); d < time.Second {
		t.Errorf("refetched after %v, within max-age=1", d)
	}
	if n := h.count(segPath); n != 2 {
		t.Errorf("holder asked %d times, want 2", n)
	}
}

// Each query is its own object (a blocking playlist reload is one).
func TestQueryIsPartOfTheKey(t *testing.T) {
	h := newHolder(t)
	h.put("/hls/ch/stream.m3u8", reply{header: map[string]string{"Cache-Control": "public, max-age=60"}, body: livePL})
	_, srv, _ := setup(t, h, Options{})
	for _, q := range []string{"", "?_HLS_msn=12&_HLS_part=2", "?_HLS_msn=12&_HLS_part=3", "", "?_HLS_msn=12&_HLS_part=3"} {
		get(t, srv.URL+"/hls/ch/stream.m3u8"+q)
	}
	for key, want := range map[string]int{"/hls/ch/stream.m3u8": 1, "/hls/ch/stream.m3u8?_HLS_msn=12&_HLS_part=2": 1, "/hls/ch/stream.m3u8?_HLS_msn=12&_HLS_part=3": 1} {
		if n := h.count(key); n != want {
			t.Errorf("holder asked for %s %d times, want %d", key, n, want)
		}
	}
}

func TestHeaders(t *testing.T) {
	h := newHolder(t)
	sent := map[string]string{
		"Content-Type":  "video/iso.segment",
		"Cache-Control": "public, max-age=86400, immutable",
		"ETag":          `"seg-11"`,
		"Last-Modified": "Sun, 01 Mar 2026 12:00:00 GMT",
		"Surrogate-Key": "ch ch/abcd1234",
		"Cache-Tag":     "ch,ch/abcd1234",
		"Vary":          "Origin",
	}
	withPrivate := map[string]string{"Set-Cookie": "s=1", "X-Holder-Secret": "x"}
	for k, v := range sent {
		withPrivate[k] = v
	}
	h.put(segPath, reply{header: withPrivate, body: "segment-11"})
	_, srv, _ := setup(t, h, Options{})

	for i, label := range []string{"fetched", "kept"} {
		a := get(t, srv.URL+segPath)
		if a.status != 200 || a.body != "segment-11" {
			t.Fatalf("%s: %d %q", label, a.status, a.body)
		}
		for k, v := range sent {
			if got := a.header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want the holder's %q", label, k, got, v)
			}
		}
		for _, k := range []string{"Set-Cookie", "X-Holder-Secret"} {
			if got := a.header.Get(k); got != "" {
				t.Errorf("%s: holder's %s passed on: %q", label, k, got)
			}
		}
		if got := a.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin = %q", label, got)
		}
		if n := h.count(segPath); n != 1 {
			t.Fatalf("after GET %d the holder was asked %d times", i+1, n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.relayHeader) != 1 || h.relayHeader["1"] != 1 {
		t.Errorf("%s values on the holder's requests: %v, want 1 on each", Header, h.relayHeader)
	}
}

func TestConditionalAndRangeOnAKeptObject(t *testing.T) {
	h := newHolder(t)
	h.put(segPath, reply{header: map[string]string{"Cache-Control": "public, max-age=60", "ETag": `"e1"`, "Content-Type": "video/iso.segment"}, body: "0123456789"})
	_, srv, _ := setup(t, h, Options{})
	get(t, srv.URL+segPath) // kept

	cases := []struct {
		name       string
		method     string
		hdr        map[string]string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{"If-None-Match matching", "GET", map[string]string{"If-None-Match": `"e1"`}, 304, "", map[string]string{"ETag": `"e1"`}},
		{"If-None-Match any", "GET", map[string]string{"If-None-Match": `*`}, 304, "", nil},
		{"If-None-Match other", "GET", map[string]string{"If-None-Match": `"e0"`}, 200, "0123456789", map[string]string{"Content-Length": "10"}},
		{"Range", "GET", map[string]string{"Range": "bytes=2-5"}, 206, "2345", map[string]string{"Content-Range": "bytes 2-5/10", "Content-Type": "video/iso.segment"}},
		{"Range suffix", "GET", map[string]string{"Range": "bytes=-3"}, 206, "789", map[string]string{"Content-Range": "bytes 7-9/10"}},
		{"Range unsatisfiable", "GET", map[string]string{"Range": "bytes=20-30"}, 416, "", nil},
		{"If-Range other", "GET", map[string]string{"Range": "bytes=2-5", "If-Range": `"e0"`}, 200, "0123456789", nil},
		{"HEAD", "HEAD", nil, 200, "", map[string]string{"Content-Length": "10", "ETag": `"e1"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, srv.URL+segPath, tc.hdr)
			if a.status != tc.wantStatus {
				t.Fatalf("status %d, want %d", a.status, tc.wantStatus)
			}
			if tc.wantStatus != 416 && a.body != tc.wantBody {
				t.Errorf("body %q, want %q", a.body, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if got := a.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	if n := h.count(segPath); n != 1 {
		t.Errorf("holder asked %d times, want once: all from the kept object", n)
	}
}

// A holder's answer other than 200 goes to the viewer as it is, without the
// conditional and range handling of a 200.
func TestNon200PassedAsIs(t *testing.T) {
	h := newHolder(t)
	h.put(segPath, reply{status: http.StatusGone, header: map[string]string{"Cache-Control": "public, max-age=60", "ETag": `"g"`}, body: "gone"})
	_, srv, _ := setup(t, h, Options{})
	for _, hdr := range []map[string]string{nil, {"If-None-Match": `"g"`}, {"Range": "bytes=0-1"}} {
		a := do(t, "GET", srv.URL+segPath, hdr)
		if a.status != http.StatusGone || a.body != "gone" || a.header.Get("ETag") != "" || a.header.Get("Content-Length") != "4" {
			t.Errorf("GET with %v = %d %q ETag %q Content-Length %q", hdr, a.status, a.body, a.header.Get("ETag"), a.header.Get("Content-Length"))
		}
	}
}

func TestConcurrentFetchesCollapse(t *testing.T) {
	cases := []struct {
		name, path, query, cc string
	}{
		{"part", "/hls/ch/abcd1234_12_3.m4s", "", "public, max-age=86400, immutable"},
		{"blocking playlist reload", "/hls/ch/stream.m3u8", "?_HLS_msn=12&_HLS_part=3", "public, max-age=1"},
		{"not kept", "/hls/ch/abcd1234_12_4.m4s", "", "no-store"},
	}
	const n = 12
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHolder(t)
			h.put(tc.path, reply{header: map[string]string{"Cache-Control": tc.cc}, body: "body of " + tc.path})
			rl, srv, _ := setup(t, h, Options{})
			release := h.hold()
			defer release()

			bodies := make(chan answer, n)
			for i := 0; i < n; i++ {
				go func() {
					resp, err := http.Get(srv.URL + tc.path + tc.query)
					if err != nil {
						bodies <- answer{status: -1, body: err.Error()}
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					bodies <- answer{status: resp.StatusCode, body: string(b)}
				}()
			}
			// Every request is in: one at the holder, the others waiting for its fetch.
			waitFor(t, 10*time.Second, "the requests did not all collapse into one fetch", func() bool {
				return rl.collapsed.Load() == n-1 && h.total() == 1
			})
			release()
			for i := 0; i < n; i++ {
				select {
				case a := <-bodies:
					if a.status != 200 || a.body != "body of "+tc.path {
						t.Errorf("viewer %d: %d %q", i, a.status, a.body)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("only %d of %d viewers answered", i, n)
				}
			}
			if got := h.count(tc.path + tc.query); got != 1 {
				t.Errorf("holder asked %d times for %d concurrent viewers, want once", got, n)
			}
			if got := rl.fetches.Load(); got != 1 {
				t.Errorf("fetches = %d, want 1", got)
			}
		})
	}
}

// The fetch of a flight is not the first viewer's: it goes on when that
// viewer leaves, for the others waiting.
func TestFetchOutlivesTheFirstViewer(t *testing.T) {
	const path = "/hls/ch/abcd1234_12_0.m4s"
	h := newHolder(t)
	h.put(path, reply{header: map[string]string{"Cache-Control": "public, max-age=60"}, body: "part"})
	rl, srv, _ := setup(t, h, Options{})
	release := h.hold()
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	<-h.arrived
	second := make(chan answer, 1)
	go func() { second <- get(t, srv.URL+path) }()
	waitFor(t, 10*time.Second, "second viewer not waiting for the fetch", func() bool { return rl.collapsed.Load() == 1 })
	cancel()
	if err := <-first; err == nil {
		t.Fatal("the first viewer's request was not canceled")
	}
	release()
	select {
	case a := <-second:
		if a.status != 200 || a.body != "part" {
			t.Fatalf("second viewer: %d %q", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second viewer not answered")
	}
	if n := h.count(path); n != 1 {
		t.Errorf("holder asked %d times, want once", n)
	}
	if a := get(t, srv.URL+path); a.body != "part" || h.count(path) != 1 {
		t.Errorf("the fetch was not kept: %q, holder asked %d times", a.body, h.count(path))
	}
}

// livePL is a holder's LL-HLS media playlist whose segment 12 is in progress.
const livePL = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=0.600
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-MAP:URI="abcd1234_init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z
#EXTINF:2.000,
abcd1234_10.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:02.000Z
#EXT-X-PART:DURATION=1.000,URI="abcd1234_11_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.001,URI="abcd1234_11_1.m4s"
#EXTINF:2.001,
abcd1234_11.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:04.001Z
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_1.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_2.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_3.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_4.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_5.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_6.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_7.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abcd1234_12_8.m4s"
#EXT-X-RENDITION-REPORT:URI="../ch_720/stream.m3u8",LAST-MSN=12,LAST-PART=7
`

// livePLCompleted is livePL as completed(): segment 12 of its 8 parts' 1.6 s,
// then the date segment 13 would start at.
const livePLCompleted = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=0.600
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-MAP:URI="abcd1234_init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z
#EXTINF:2.000,
abcd1234_10.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:02.000Z
#EXT-X-PART:DURATION=1.000,URI="abcd1234_11_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.001,URI="abcd1234_11_1.m4s"
#EXTINF:2.001,
abcd1234_11.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:04.001Z
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_1.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_2.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_3.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_4.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_5.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_6.m4s"
#EXT-X-PART:DURATION=0.200,URI="abcd1234_12_7.m4s"
#EXTINF:1.600,
abcd1234_12.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:05.601Z
`

func TestCompleted(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"segment in progress", livePL, livePLCompleted},
		{
			name: "ends with a complete segment: just the next date",
			in: `#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T23:59:58.500Z
#EXTINF:2.002,
abcd1234_7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T23:59:59.500+00:00
#EXTINF:1.001,
abcd1234_8.m4s
`,
			want: `#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T23:59:58.500Z
#EXTINF:2.002,
abcd1234_7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T23:59:59.500+00:00
#EXTINF:1.001,
abcd1234_8.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-02T00:00:00.501Z
`,
		},
		{
			name: "complete segment with parts listed, the next one hinted",
			in: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000+01:00
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_1.m4s"
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_2.m4s"
#EXTINF:0.900,
abcd1234_3.m4s
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abcd1234_4_0.m4s"
`,
			want: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000+01:00
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_1.m4s"
#EXT-X-PART:DURATION=0.300,URI="abcd1234_3_2.m4s"
#EXTINF:0.900,
abcd1234_3.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T11:00:00.900Z
`,
		},
		{
			name: "delta playlist",
			in: `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-SKIP:SKIPPED-SEGMENTS=6
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:12.000Z
#EXTINF:2.000,
wxyz9876_106.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:14.000Z
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_1.m4s"
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_2.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="wxyz9876_107_3.m4s"
`,
			want: `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-SKIP:SKIPPED-SEGMENTS=6
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:12.000Z
#EXTINF:2.000,
wxyz9876_106.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:14.000Z
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_1.m4s"
#EXT-X-PART:DURATION=0.300,URI="wxyz9876_107_2.m4s"
#EXTINF:0.900,
wxyz9876_107.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:14.900Z
`,
		},
		{
			name: "one date for several segments",
			in: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z
#EXTINF:2.002,
abcd1234_0.m4s
#EXTINF:2.002,
abcd1234_1.m4s
#EXTINF:2.002,
abcd1234_2.m4s
#EXT-X-PART:DURATION=0.334,URI="abcd1234_3_0.m4s"
`,
			want: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z
#EXTINF:2.002,
abcd1234_0.m4s
#EXTINF:2.002,
abcd1234_1.m4s
#EXTINF:2.002,
abcd1234_2.m4s
#EXT-X-PART:DURATION=0.334,URI="abcd1234_3_0.m4s"
#EXTINF:0.334,
abcd1234_3.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:06.340Z
`,
		},
		{
			name: "first segment in progress, no date",
			in: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PART:DURATION=0.500,URI="abcd1234_0_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI="abcd1234_0_1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abcd1234_0_2.m4s"`,
			want: `#EXTM3U
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PART:DURATION=0.500,URI="abcd1234_0_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.250,URI="abcd1234_0_1.m4s"
#EXTINF:0.750,
abcd1234_0.m4s
`,
		},
		{
			name: "nothing listed yet",
			in:   "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"abcd1234_0_0.m4s\"\n",
			want: "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(completed([]byte(tc.in)))
			if got != tc.want {
				t.Errorf("completed:\n%s\nwant:\n%s", got, tc.want)
			}
			// Completing a completed playlist adds nothing but the date again.
			if again := string(completed([]byte(got))); strings.Count(again, "#EXTINF") != strings.Count(got, "#EXTINF") {
				t.Errorf("completed twice adds a segment:\n%s", again)
			}
		})
	}
}

func TestLastSegment(t *testing.T) {
	cases := []struct {
		name   string
		pl     string
		want   uint64
		wantOK bool
	}{
		{"segment in progress counts", livePL, 12, true},
		{"completed playlist", livePLCompleted, 12, true},
		{"complete segments only", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.000,\na_7.m4s\n#EXTINF:2.000,\na_8.m4s\n", 8, true},
		{"parts of a complete segment", "#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-PART:DURATION=0.3,URI=\"a_3_0.m4s\"\n#EXTINF:0.3,\na_3.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a_4_0.m4s\"\n", 3, true},
		{"skipped segments count", "#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n#EXTINF:2.000,\na_106.m4s\n#EXT-X-PART:DURATION=0.3,URI=\"a_107_0.m4s\"\n", 107, true},
		{"skip with recently removed dateranges", "#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-SKIP:SKIPPED-SEGMENTS=6,RECENTLY-REMOVED-DATERANGES=\"x\"\n#EXTINF:2.000,\na_106.m4s\n", 106, true},
		{"first segment in progress", "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PART:DURATION=0.3,URI=\"a_0_0.m4s\"\n", 0, true},
		{"no segment yet", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a_5_0.m4s\"\n", 0, false},
		{"no media sequence", "#EXTM3U\n#EXTINF:2.000,\na_0.m4s\n", 0, false},
		{"bad media sequence", "#EXT-X-MEDIA-SEQUENCE:x\n#EXTINF:2.000,\na_0.m4s\n", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lastSegment([]byte(tc.pl))
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lastSegment = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

const plPath = "/hls/ch/stream.m3u8"

// While the holder is unreachable or gone, a media playlist request gets the
// last playlist, completed, after Options.Hold.
func TestLastPlaylistBridgesTheHolderGone(t *testing.T) {
	cases := []struct {
		name string
		gone func(h *holderSrv, loc *locator)
	}{
		{"holder closed", func(h *holderSrv, _ *locator) { h.srv.Close() }},
		{"holder answers 404", func(h *holderSrv, _ *locator) { h.del(plPath) }},
		{"no node holds the channel", func(_ *holderSrv, loc *locator) { loc.set(Holder{}, false, nil) }},
		{"this node holds it now", func(_ *holderSrv, loc *locator) { loc.set(Holder{Node: self, Addr: "http://127.0.0.1:1"}, true, nil) }},
		{"the registry fails", func(_ *holderSrv, loc *locator) { loc.set(Holder{}, false, errors.New("redis down")) }},
	}
	const hold = 100 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHolder(t)
			h.put(plPath, reply{header: map[string]string{"Cache-Control": "public, max-age=1", "Content-Type": "application/vnd.apple.mpegurl", "ETag": `"pl"`}, body: livePL})
			rl, srv, loc := setup(t, h, Options{Hold: hold})
			if rl.Bridging("ch") {
				t.Fatal("Bridging before any playlist")
			}
			if a := get(t, srv.URL+plPath); a.status != 200 || a.body != livePL {
				t.Fatalf("playlist from the holder: %d %q", a.status, a.body)
			}
			if msn, ok := rl.LastSegment("ch"); !ok || msn != 12 || !rl.Bridging("ch") {
				t.Fatalf("LastSegment = %d, %v; Bridging %v", msn, ok, rl.Bridging("ch"))
			}

			tc.gone(h, loc)
			// A blocking reload (not kept): answered once the holder's answer
			// is known to be gone (the holder's location is reused for a second).
			var a answer
			var took time.Duration
			msn := 13
			waitFor(t, 5*time.Second, "the last playlist is not served", func() bool {
				start := time.Now()
				a = get(t, srv.URL+plPath+"?_HLS_msn="+strconv.Itoa(msn)+"&_HLS_part=0")
				took = time.Since(start)
				msn++
				return a.body != livePL
			})
			if a.status != 200 || a.body != livePLCompleted {
				t.Fatalf("playlist with the holder gone: %d\n%s\nwant the last one completed:\n%s", a.status, a.body, livePLCompleted)
			}
			if took < hold {
				t.Errorf("the last playlist came after %v, before Hold %v", took, hold)
			}
			if cc := a.header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", cc)
			}
			if et := a.header.Get("ETag"); et != "" {
				t.Errorf("ETag %q on the completed playlist", et)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/vnd.apple.mpegurl" {
				t.Errorf("Content-Type %q", ct)
			}
			if rl.stale.Load() < 1 {
				t.Errorf("stale = %d", rl.stale.Load())
			}
			if msn, ok := rl.LastSegment("ch"); !ok || msn != 12 {
				t.Errorf("LastSegment while bridging = %d, %v", msn, ok)
			}
			// The playlist without a query too, once its kept copy expires.
			waitFor(t, 5*time.Second, "stream.m3u8 not completed after its max-age", func() bool {
				return get(t, srv.URL+plPath).body == livePLCompleted
			})
		})
	}
}

// While the holder is unreachable, anything but the media playlist fails:
// a 502 nobody keeps.
func TestHolderUnreachable502(t *testing.T) {
	h := newHolder(t)
	h.put(plPath, reply{header: map[string]string{"Cache-Control": "public, max-age=1"}, body: livePL})
	rl, srv, _ := setup(t, h, Options{})
	get(t, srv.URL+plPath)
	h.srv.Close()
	for _, p := range []string{"/hls/ch/abcd1234_12_8.m4s", "/hls/ch/abcd1234_12.m4s", "/hls/ch/index.m3u8", "/hls/ch/abcd1234_init.mp4"} {
		a := get(t, srv.URL+p)
		if a.status != http.StatusBadGateway || a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s with the holder closed: %d, Cache-Control %q; want 502, no-store", p, a.status, a.header.Get("Cache-Control"))
		}
	}
	if got := rl.failures.Load(); got != 4 {
		t.Errorf("failures = %d, want 4", got)
	}
	// Another channel, never relayed here: its playlist fails too.
	if a := get(t, srv.URL+"/hls/other/stream.m3u8"); a.status != http.StatusBadGateway {
		t.Errorf("a playlist never relayed, holder closed: %d, want 502", a.status)
	}
}

// The last playlist is served for Options.Grace after the last good fetch, no longer.
func TestGraceEnds(t *testing.T) {
	const grace = 500 * time.Millisecond
	h := newHolder(t)
	h.put(plPath, reply{header: map[string]string{"Cache-Control": "no-cache"}, body: livePL})
	rl, srv, loc := setup(t, h, Options{Grace: grace, Hold: 10 * time.Millisecond})
	fetched := time.Now() // no later than the relay's fetch
	get(t, srv.URL+plPath)
	h.srv.Close()

	if a := get(t, srv.URL+plPath); a.status != 200 || a.body != livePLCompleted {
		if time.Since(fetched) < grace {
			t.Fatalf("within the grace: %d %q", a.status, a.body)
		}
	}
	waitFor(t, 5*time.Second, "the last playlist is served past the grace", func() bool {
		return get(t, srv.URL+plPath).status == http.StatusBadGateway
	})
	if d := time.Since(fetched); d < grace {
		t.Errorf("the last playlist dropped after %v, within the grace %v", d, grace)
	}
	if rl.Bridging("ch") {
		t.Error("Bridging past the grace")
	}
	if _, ok := rl.LastSegment("ch"); ok {
		t.Error("LastSegment past the grace")
	}
	// Past the grace, a channel no node holds is offline.
	loc.set(Holder{}, false, nil)
	waitFor(t, 5*time.Second, "channel not offline", func() bool { return get(t, srv.URL+plPath).status == http.StatusNotFound })
}

func TestNotRelayed(t *testing.T) {
	cases := []struct {
		name       string
		method     string
		path       string
		holder     Holder
		ok         bool
		err        error
		wantStatus int
		wantCC     string
	}{
		{"no node holds it", "GET", plPath, Holder{}, false, nil, 404, "public, max-age=1"},
		{"no node holds it, HEAD", "HEAD", segPath, Holder{}, false, nil, 404, "public, max-age=1"},
		{"this node holds it", "GET", plPath, Holder{Node: self}, true, nil, 404, "public, max-age=1"},
		{"the registry fails, nothing kept", "GET", plPath, Holder{}, false, errors.New("redis down"), 502, "no-store"},
		{"not under /hls/", "GET", "/other/ch/stream.m3u8", Holder{Node: "node-h"}, true, nil, 404, "public, max-age=1"},
		{"no object", "GET", "/hls/ch/", Holder{Node: "node-h"}, true, nil, 404, "public, max-age=1"},
		{"no channel", "GET", "/hls//stream.m3u8", Holder{Node: "node-h"}, true, nil, 404, "public, max-age=1"},
		{"too deep", "GET", "/hls/ch/a/stream.m3u8", Holder{Node: "node-h"}, true, nil, 404, "public, max-age=1"},
		{"POST", "POST", plPath, Holder{Node: "node-h"}, true, nil, 405, ""},
		{"a browser's preflight", "OPTIONS", plPath, Holder{Node: "node-h"}, true, nil, 204, "public, max-age=86400"},
		{"invalid channel name", "GET", "/hls/Ch.x/stream.m3u8", Holder{Node: "node-h"}, true, nil, 404, "public, max-age=1"},
		{"a query players never send", "GET", plPath + "?x=1", Holder{Node: "node-h"}, true, nil, 400, "no-store"},
		{"a parameter twice", "GET", plPath + "?_HLS_msn=1&_HLS_msn=2", Holder{Node: "node-h"}, true, nil, 400, "no-store"},
		{"an escaped path", "GET", "/hls/ch/%73tream.m3u8", Holder{Node: "node-h"}, true, nil, 400, "no-store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHolder(t)
			h.put(plPath, reply{body: livePL})
			h.put(segPath, reply{body: "seg"})
			rl, srv, loc := setup(t, h, Options{})
			if tc.holder.Node != "" {
				tc.holder.Addr = h.srv.URL // were it fetched, the holder would answer
			}
			loc.set(tc.holder, tc.ok, tc.err)
			a := do(t, tc.method, srv.URL+tc.path, nil)
			if a.status != tc.wantStatus {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, a.status, tc.wantStatus)
			}
			if cc := a.header.Get("Cache-Control"); tc.wantCC != "" && cc != tc.wantCC {
				t.Errorf("Cache-Control %q, want %q", cc, tc.wantCC)
			}
			if tc.wantStatus == 405 && a.header.Get("Allow") != "GET, HEAD, OPTIONS" {
				t.Errorf("Allow %q", a.header.Get("Allow"))
			}
			if n := h.total(); n != 0 {
				t.Errorf("the holder was asked %d times", n)
			}
			if rl.fetches.Load() != 0 {
				t.Errorf("fetches = %d", rl.fetches.Load())
			}
		})
	}
}

// A channel's holder is looked up at most once a second, and again at once
// after it did not answer.
func TestLocateReused(t *testing.T) {
	h := newHolder(t)
	for i := 0; i < 5; i++ {
		h.put(fmt.Sprintf("/hls/ch/abcd1234_%d.m4s", i), reply{body: "s", header: map[string]string{"Cache-Control": "no-store"}})
	}
	_, srv, loc := setup(t, h, Options{})
	for i := 0; i < 5; i++ {
		get(t, srv.URL+fmt.Sprintf("/hls/ch/abcd1234_%d.m4s", i))
	}
	if n := loc.n(); n != 1 {
		t.Errorf("Locate called %d times for 5 fetches within a second, want 1", n)
	}
	h.srv.Close()
	get(t, srv.URL+segPath) // fails: the holder is forgotten
	for i := 0; i < 2; i++ {
		before := loc.n()
		get(t, srv.URL+segPath)
		if n := loc.n() - before; n != 1 {
			t.Errorf("Locate called %d times for a fetch after a failed one, want 1", n)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	h := newHolder(t)
	cc := map[string]string{"Cache-Control": "public, max-age=60"}
	big := strings.Repeat("B", 32)
	h.put("/hls/ch/big_1.m4s", reply{header: cc, body: big})
	h.put("/hls/ch/small_1.m4s", reply{header: cc, body: "12345678"})
	h.put("/hls/ch/small_2.m4s", reply{header: cc, body: "abcdefgh"})
	h.put("/hls/ch/small_3.m4s", reply{header: cc, body: "ABCDEFGH"})
	rl, srv, _ := setup(t, h, Options{MaxBytes: 16})

	cases := []struct {
		path, body string
		wantHits   int // holder requests for two GETs
	}{
		{"/hls/ch/big_1.m4s", big, 2},          // over the budget: served, not kept
		{"/hls/ch/small_1.m4s", "12345678", 1}, // 8 of 16
		{"/hls/ch/small_2.m4s", "abcdefgh", 1}, // 16 of 16
		{"/hls/ch/small_3.m4s", "ABCDEFGH", 2}, // full
	}
	for _, tc := range cases {
		for i := 0; i < 2; i++ {
			if a := get(t, srv.URL+tc.path); a.status != 200 || a.body != tc.body {
				t.Fatalf("GET %s: %d %q", tc.path, a.status, a.body)
			}
		}
		if n := h.count(tc.path); n != tc.wantHits {
			t.Errorf("%s: holder asked %d times, want %d", tc.path, n, tc.wantHits)
		}
	}
	m := metrics(t, rl)
	if m["onair_relay_bytes"] != 16 || m["onair_relay_objects"] != 2 {
		t.Errorf("kept %d objects of %d bytes, want 2 of 16", m["onair_relay_objects"], m["onair_relay_bytes"])
	}
}

// metrics parses the relay's samples as Prometheus gathers them.
func metrics(t *testing.T, rl *Relay) map[string]int64 {
	t.Helper()
	var b strings.Builder
	if err := metricstest.Write(&b, rl); err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		n, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			t.Fatalf("metrics line %q", line)
		}
		m[name] = int64(n)
	}
	return m
}

func TestCollect(t *testing.T) {
	h := newHolder(t)
	seg := strings.Repeat("s", 100)
	h.put(segPath, reply{header: map[string]string{"Cache-Control": "public, max-age=60"}, body: seg})
	h.put(plPath, reply{header: map[string]string{"Cache-Control": "no-cache"}, body: livePL})
	rl, srv, _ := setup(t, h, Options{Hold: time.Millisecond})

	get(t, srv.URL+segPath) // fetched, kept
	get(t, srv.URL+segPath) // hit
	get(t, srv.URL+segPath) // hit
	get(t, srv.URL+plPath)  // fetched, not kept
	h.srv.Close()
	get(t, srv.URL+plPath)                      // stale
	get(t, srv.URL+"/hls/ch/abcd1234_12_8.m4s") // failure

	var b strings.Builder
	if err := metricstest.Write(&b, rl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE onair_relay_fetches_total counter", "# TYPE onair_relay_hits_total counter",
		"# TYPE onair_relay_objects gauge", "# TYPE onair_relay_bytes gauge", "# HELP onair_relay_stale_total ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
	m := metrics(t, rl)
	want := map[string]int64{
		"onair_relay_fetched_bytes_total": int64(100 + len(livePL)),
		"onair_relay_hits_total":          2,
		"onair_relay_collapsed_total":     0,
		"onair_relay_stale_total":         1,
		"onair_relay_failures_total":      1,
		"onair_relay_objects":             1,
		"onair_relay_bytes":               100,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	if problems, err := testutil.CollectAndLint(rl); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
	// Two fetches answered; the two attempts at the closed holder count or not.
	if f := m["onair_relay_fetches_total"]; f < 2 || f > 4 {
		t.Errorf("onair_relay_fetches_total = %d, want 2 to 4", f)
	}
}

func TestNewDefaults(t *testing.T) {
	rl := New(Options{})
	o := rl.opts
	if o.Hold != time.Second || o.Timeout != 15*time.Second || o.Grace != 15*time.Second || o.MaxBytes != 512<<20 || o.Client == nil || rl.log == nil {
		t.Fatalf("defaults: %+v", o)
	}
	// A holder's redirect is not followed.
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "elsewhere") }))
	defer target.Close()
	holder := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer holder.Close()
	_, srv, loc := setup(t, nil, Options{})
	loc.set(Holder{Node: "node-h", Addr: holder.URL}, true, nil)
	if a := get(t, srv.URL+segPath); a.status != http.StatusFound || a.body == "elsewhere" {
		t.Errorf("a holder's redirect: %d %q, want the 302 passed on", a.status, a.body)
	}
}

// A request with PurgeHeader (an edge's purge) is fetched anew, and what it
// fetched replaces what was kept.
func TestPurgeRequestBypassesKept(t *testing.T) {
	h := newHolder(t)
	cc := map[string]string{"Cache-Control": "public, max-age=60"}
	h.put(segPath, reply{header: cc, body: "v1"})
	rl, srv, _ := setup(t, h, Options{})
	get(t, srv.URL+segPath)
	h.put(segPath, reply{header: cc, body: "v2-longer"})
	if a := get(t, srv.URL+segPath); a.body != "v1" {
		t.Fatalf("kept: %q", a.body)
	}
	if a := do(t, "GET", srv.URL+segPath, map[string]string{PurgeHeader: "1"}); a.body != "v2-longer" {
		t.Fatalf("purge request: %q, want the holder's v2-longer", a.body)
	}
	if a := get(t, srv.URL+segPath); a.body != "v2-longer" {
		t.Errorf("after the purge request: %q, want v2-longer kept", a.body)
	}
	if n := h.count(segPath); n != 2 {
		t.Errorf("holder asked %d times, want 2", n)
	}
	if m := metrics(t, rl); m["onair_relay_objects"] != 1 || m["onair_relay_bytes"] != int64(len("v2-longer")) {
		t.Errorf("kept %d objects of %d bytes, want 1 of %d", m["onair_relay_objects"], m["onair_relay_bytes"], len("v2-longer"))
	}
}

// Drop forgets what was kept of one channel, and only of that one.
func TestDrop(t *testing.T) {
	h := newHolder(t)
	cc := map[string]string{"Cache-Control": "public, max-age=60"}
	h.put(segPath, reply{header: cc, body: "ch-seg"})
	h.put("/hls/ch2/abcd1234_11.m4s", reply{header: cc, body: "ch2-seg"})
	h.put(plPath, reply{header: cc, body: livePL})
	rl, srv, _ := setup(t, h, Options{})
	for _, p := range []string{segPath, plPath, "/hls/ch2/abcd1234_11.m4s"} {
		get(t, srv.URL+p)
	}
	if !rl.Bridging("ch") {
		t.Fatal("no last playlist kept")
	}
	rl.Drop("ch")
	if rl.Bridging("ch") {
		t.Error("Bridging after Drop")
	}
	if m := metrics(t, rl); m["onair_relay_objects"] != 1 || m["onair_relay_bytes"] != int64(len("ch2-seg")) {
		t.Errorf("after Drop kept %d objects of %d bytes, want ch2's only", m["onair_relay_objects"], m["onair_relay_bytes"])
	}
	for _, p := range []string{segPath, "/hls/ch2/abcd1234_11.m4s"} {
		get(t, srv.URL+p)
	}
	if a, b := h.count(segPath), h.count("/hls/ch2/abcd1234_11.m4s"); a != 2 || b != 1 {
		t.Errorf("after Drop the holder was asked for ch's segment %d times (want 2), ch2's %d (want 1)", a, b)
	}
}

// A channel taken down (Locate says ErrEnded) is offline at once: what was
// kept of it goes, its last playlist is not served.
func TestTakenDown(t *testing.T) {
	h := newHolder(t)
	h.put(segPath, reply{header: map[string]string{"Cache-Control": "public, max-age=60"}, body: "seg"})
	h.put(plPath, reply{header: map[string]string{"Cache-Control": "no-cache"}, body: livePL})
	rl, srv, loc := setup(t, h, Options{})
	get(t, srv.URL+segPath)
	get(t, srv.URL+plPath)

	loc.set(Holder{}, false, fmt.Errorf("look up: %w", ErrEnded))
	var a answer
	waitFor(t, 5*time.Second, "a channel taken down is still relayed", func() bool {
		a = get(t, srv.URL+plPath)
		return a.status != http.StatusOK
	})
	if a.status != http.StatusNotFound || a.header.Get("Cache-Control") != "public, max-age=1" {
		t.Fatalf("playlist of a channel taken down: %d, Cache-Control %q; want 404, public, max-age=1", a.status, a.header.Get("Cache-Control"))
	}
	if rl.Bridging("ch") {
		t.Error("Bridging a channel taken down")
	}
	if m := metrics(t, rl); m["onair_relay_objects"] != 0 || m["onair_relay_bytes"] != 0 {
		t.Errorf("a channel taken down still has %d objects of %d bytes kept", m["onair_relay_objects"], m["onair_relay_bytes"])
	}
	if a := get(t, srv.URL+segPath); a.status != http.StatusNotFound {
		t.Errorf("kept segment of a channel taken down: %d, want 404", a.status)
	}
}
