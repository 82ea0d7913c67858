// Package relay serves the HLS of channels published on other nodes. It
// fetches each object from the node holding the channel and keeps it as a
// CDN edge would, for as long as the holder's Cache-Control allows, and it
// collapses concurrent requests for one object (a blocking playlist reload
// included) into one fetch: however many viewers an origin node has, the
// holder sees each object asked for once per origin node.
//
// While a channel's holder cannot be reached, or has vanished from the
// registry, and the channel's publisher may still come back on another node
// within the reconnect grace, the relay keeps answering the last media
// playlist it had (after a short wait, marked not cacheable), so players hold
// still instead of failing, as they do on one node during the grace.
package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onairhq/onair/ingest"
)

// Holder is where a channel is published: a node's identity and the base URL
// of its HTTP.
type Holder struct {
	Node, Addr string
}

// Options configure a Relay.
type Options struct {
	// Locate returns the node holding channel; ok is false when no node does.
	Locate func(ctx context.Context, channel string) (h Holder, ok bool, err error)
	// Self is this node's identity: a channel it holds itself is never relayed.
	Self string
	// Hold is how long a playlist request waits for a holder that does not
	// answer before the last playlist is served again (default 1 s).
	Hold time.Duration
	// Timeout bounds one fetch from a holder, a blocking playlist request's
	// wait included (default 15 s).
	Timeout time.Duration
	// Grace is how long after its last good fetch a channel whose holder is
	// gone keeps its last playlist served (default 15 s; 0 keeps the default).
	Grace time.Duration
	// MaxBytes bounds what the relay keeps (default 512 MiB); past it, new
	// objects are passed on without being kept.
	MaxBytes int64
	// Client fetches from holders (default: a client of its own).
	Client *http.Client
	Logger *slog.Logger
}

// Header marks a relay's own requests to a holder: the holder answers them
// from what it has and never relays them on, so two nodes that disagree about
// who holds a channel cannot send a request around in circles.
const Header = "X-Onair-Relay"

// ErrEnded is what Options.Locate returns (wrapped) for a channel whose
// holder took its broadcast down: the relay then drops what it kept of the
// channel and answers 404, so the broadcast is not served from here either.
var ErrEnded = errors.New("the channel's broadcast ended")

// PurgeHeader is the header of a CDN edge's purge request (see package
// purge): such a request is never answered from what the relay kept.
const PurgeHeader = "X-Onair-Purge"

// locateTTL is how long a holder lookup is reused.
const locateTTL = time.Second

// Relay is the http.Handler for /hls/ paths of channels held elsewhere.
type Relay struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	objects   map[string]*object // by path and query
	flights   map[string]*flight
	holders   map[string]located
	last      map[string]*object // each channel's last media playlist, for the grace
	bytes     int64
	lastSweep time.Time

	fetches, hits, collapsed, stale, failures atomic.Int64
	fetchedBytes                              atomic.Int64
}

// object is one answer of a holder, as kept.
type object struct {
	status  int
	header  http.Header // the headers passed on
	body    []byte
	expires time.Time
	fetched time.Time
}

type flight struct {
	done chan struct{}
	obj  *object
	err  error
}

type located struct {
	h       Holder
	ok      bool
	expires time.Time
}

// passed are the holder's headers a relayed answer carries.
var passed = []string{"Content-Type", "Cache-Control", "ETag", "Last-Modified", "Surrogate-Key", "Cache-Tag", "Vary"}

// New returns a Relay.
func New(opts Options) *Relay {
	if opts.Hold <= 0 {
		opts.Hold = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = 15 * time.Second
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 512 << 20
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
			// A holder's answer is final: a redirect would be a misconfiguration.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Relay{
		opts:    opts,
		log:     opts.Logger,
		objects: map[string]*object{},
		flights: map[string]*flight{},
		holders: map[string]located{},
		last:    map[string]*object{},
	}
}

// ServeHTTP answers a GET or HEAD of /hls/{channel}/{object}[?query] from
// what the relay keeps or fetches.
func (rl *Relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Age, Date, Content-Length, Content-Range, ETag, Last-Modified")
	if r.Method == http.MethodOptions { // a browser's preflight, answered as the origin does
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, If-None-Match, If-Modified-Since, Accept-Encoding")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Cache-Control", "public, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	channel, ok := channelOf(r.URL.Path)
	if !ok || !ingest.ValidChannelName(channel) {
		notFound(w)
		return
	}
	// What the holder's origin refuses is refused here, before any fetch or
	// cache entry: escaped paths and query parameters players never send.
	if strings.IndexByte(r.URL.RawPath, '%') >= 0 || strings.IndexByte(r.URL.EscapedPath(), '%') >= 0 || !playerQuery(r.URL.RawQuery) {
		h.Set("Cache-Control", "no-store")
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	key := r.URL.Path
	if r.URL.RawQuery != "" {
		key += "?" + r.URL.RawQuery
	}
	obj, err := rl.get(r.Context(), channel, key, r.Header.Get(PurgeHeader) != "")
	switch {
	case err == nil:
		rl.send(w, r, obj)
	case errors.Is(err, errOffline):
		notFound(w)
	case r.Context().Err() != nil:
		// The viewer left.
	default:
		var pl *object
		if isMediaPlaylist(r.URL.Path) {
			pl = rl.lastPlaylist(channel)
		}
		if pl != nil {
			rl.holdStill(r.Context())
			rl.stale.Add(1)
			rl.send(w, r, pl)
			return
		}
		rl.failures.Add(1)
		h.Set("Cache-Control", "no-store")
		http.Error(w, "the node holding this channel did not answer", http.StatusBadGateway)
	}
}

var errOffline = errors.New("channel is not live on any node")

// get returns the object at key, kept (unless fresh is set) or fetched once
// for every caller asking at the same time.
func (rl *Relay) get(ctx context.Context, channel, key string, fresh bool) (*object, error) {
	now := time.Now()
	rl.mu.Lock()
	if o := rl.objects[key]; o != nil && now.Before(o.expires) && !fresh {
		rl.mu.Unlock()
		rl.hits.Add(1)
		return o, nil
	}
	f := rl.flights[key]
	if f != nil {
		rl.mu.Unlock()
		rl.collapsed.Add(1)
		select {
		case <-f.done:
			return f.obj, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f = &flight{done: make(chan struct{})}
	rl.flights[key] = f
	rl.mu.Unlock()

	f.obj, f.err = rl.fetch(channel, key)
	rl.mu.Lock()
	delete(rl.flights, key)
	if f.err == nil {
		rl.keepLocked(channel, key, f.obj)
	}
	rl.mu.Unlock()
	close(f.done)
	return f.obj, f.err
}

// fetch asks the channel's holder for key. It runs on behalf of every caller
// of one flight, so it does not end with the first caller's request.
func (rl *Relay) fetch(channel, key string) (*object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rl.opts.Timeout)
	defer cancel()
	holder, ok, err := rl.locate(ctx, channel)
	if errors.Is(err, ErrEnded) {
		rl.Drop(channel)
		return nil, errOffline
	}
	if err != nil {
		return nil, err
	}
	if !ok || holder.Node == rl.opts.Self {
		if rl.recent(channel) != nil {
			return nil, fmt.Errorf("channel %s: no node holds it now", channel)
		}
		return nil, errOffline
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(holder.Addr, "/")+key, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s from node %s: %w", key, holder.Node, err)
	}
	req.Header.Set(Header, "1")
	rl.fetches.Add(1)
	resp, err := rl.opts.Client.Do(req)
	if err != nil {
		rl.forget(channel)
		return nil, fmt.Errorf("fetch %s from node %s: %w", key, holder.Node, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetch %s from node %s: %w", key, holder.Node, err)
	}
	rl.fetchedBytes.Add(int64(len(body)))
	if resp.StatusCode == http.StatusNotFound && isMediaPlaylist(key) && rl.recent(channel) != nil {
		// The holder let the channel go (it moved on): bridge as if it were gone.
		rl.forget(channel)
		return nil, fmt.Errorf("fetch %s from node %s: the channel is no longer there", key, holder.Node)
	}
	if resp.StatusCode >= 500 {
		return nil, fmt.Errorf("fetch %s from node %s: %s", key, holder.Node, resp.Status)
	}
	now := time.Now()
	obj := &object{status: resp.StatusCode, header: http.Header{}, body: body, fetched: now}
	for _, k := range passed {
		if v := resp.Header.Values(k); len(v) > 0 {
			obj.header[http.CanonicalHeaderKey(k)] = v // "ETag" is kept as "Etag", or Get and Del miss it
		}
	}
	obj.expires = now.Add(maxAge(resp.Header.Get("Cache-Control")))
	return obj, nil
}

// locate returns the holder of channel, looked up at most once a second.
func (rl *Relay) locate(ctx context.Context, channel string) (Holder, bool, error) {
	now := time.Now()
	rl.mu.Lock()
	l, cached := rl.holders[channel]
	rl.mu.Unlock()
	if cached && now.Before(l.expires) {
		return l.h, l.ok, nil
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	h, ok, err := rl.opts.Locate(lctx, channel)
	if err != nil && !errors.Is(err, ErrEnded) {
		return Holder{}, false, fmt.Errorf("find the node holding channel %s: %w", channel, err)
	}
	if err != nil {
		return Holder{}, false, err
	}
	rl.mu.Lock()
	rl.holders[channel] = located{h: h, ok: ok, expires: now.Add(locateTTL)}
	rl.sweepDueLocked(now)
	rl.mu.Unlock()
	return h, ok, nil
}

// Drop forgets everything kept of channel (it was taken down): its objects,
// its last playlist and its holder.
func (rl *Relay) Drop(channel string) {
	prefix := "/hls/" + channel + "/"
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for k, o := range rl.objects {
		if strings.HasPrefix(k, prefix) {
			delete(rl.objects, k)
			rl.bytes -= int64(len(o.body))
		}
	}
	delete(rl.last, channel)
	delete(rl.holders, channel)
}

// forget drops a channel's cached holder (it did not answer).
func (rl *Relay) forget(channel string) {
	rl.mu.Lock()
	delete(rl.holders, channel)
	rl.mu.Unlock()
}

// keepLocked stores obj if it may be kept, and remembers a channel's last
// good media playlist for the grace.
func (rl *Relay) keepLocked(channel, key string, obj *object) {
	now := time.Now()
	if obj.status == http.StatusOK && isMediaPlaylist(key) {
		rl.last[channel] = obj
	}
	rl.sweepDueLocked(now)
	if !now.Before(obj.expires) || rl.bytes+int64(len(obj.body)) > rl.opts.MaxBytes {
		return
	}
	if old := rl.objects[key]; old != nil {
		rl.bytes -= int64(len(old.body))
	}
	rl.objects[key] = obj
	rl.bytes += int64(len(obj.body))
}

// sweepDueLocked drops expired objects and forgotten channels, at most
// once a second.
func (rl *Relay) sweepDueLocked(now time.Time) {
	if now.Sub(rl.lastSweep) < time.Second {
		return
	}
	rl.lastSweep = now
	for k, o := range rl.objects {
		if !now.Before(o.expires) {
			delete(rl.objects, k)
			rl.bytes -= int64(len(o.body))
		}
	}
	for ch, o := range rl.last {
		if now.Sub(o.fetched) > rl.opts.Grace {
			delete(rl.last, ch)
		}
	}
	for ch, l := range rl.holders {
		if !now.Before(l.expires) {
			delete(rl.holders, ch)
		}
	}
}

// recent returns the channel's last media playlist as fetched, while it is
// within the grace.
func (rl *Relay) recent(channel string) *object {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	o := rl.last[channel]
	if o == nil || time.Since(o.fetched) > rl.opts.Grace {
		return nil
	}
	return o
}

// lastPlaylist returns the channel's last media playlist while it is within
// the grace, completed, as an answer nobody may keep.
func (rl *Relay) lastPlaylist(channel string) *object {
	o := rl.recent(channel)
	if o == nil {
		return nil
	}
	stale := *o
	stale.body = completed(o.body)
	stale.header = o.header.Clone()
	stale.header.Set("Cache-Control", "no-cache")
	stale.header.Del("ETag")
	return &stale
}

// LastSegment returns the media sequence number of the last segment of the
// channel's last media playlist relayed here (within the grace), its
// segment in progress included: what the players of this node have seen of
// it, or will see, as the relay completes that segment when the holder is
// gone (see Bridging).
func (rl *Relay) LastSegment(channel string) (msn uint64, ok bool) {
	o := rl.recent(channel)
	if o == nil {
		return 0, false
	}
	return lastSegment(o.body)
}

// Bridging reports whether the relay holds a recent playlist of channel, so
// that it can bridge the players of this node over the channel's move from
// another node to this one (see LastSegment).
func (rl *Relay) Bridging(channel string) bool { return rl.recent(channel) != nil }

// completed rewrites a live LL-HLS media playlist as it stands when its
// publisher is gone for good: the segment in progress completed by the parts
// it lists (its URI is a part's without the part number), no preload hint,
// and the next segment's date last, as the start of a segment still to come
// (hls.js takes a playlist's last listed segment for one in progress when
// nothing follows it). A player then knows every segment up to the last, so
// a playlist continuing at the next number joins exactly where it stopped.
func completed(pl []byte) []byte {
	lines := strings.Split(strings.TrimRight(string(pl), "\n"), "\n")
	out := make([]string, 0, len(lines)+3)
	var partSecs, sincePDT float64
	var partURI string
	var pdt time.Time
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT"), strings.HasPrefix(line, "#EXT-X-RENDITION-REPORT"):
			continue
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"):
			pdt, _ = time.Parse(time.RFC3339Nano, line[len("#EXT-X-PROGRAM-DATE-TIME:"):])
			sincePDT = 0
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			if partURI == "" {
				if _, v, ok := strings.Cut(line, `URI="`); ok {
					partURI, _, _ = strings.Cut(v, `"`)
				}
			}
			partSecs += attrSecs(line, "DURATION=")
		case strings.HasPrefix(line, "#EXTINF:"):
			sincePDT += attrSecs(line, "#EXTINF:")
			partSecs, partURI = 0, "" // the parts listed so far were this segment's
		}
		out = append(out, line)
	}
	if partURI != "" && partSecs > 0 {
		if i := strings.LastIndexByte(partURI, '_'); i > 0 {
			out = append(out, fmt.Sprintf("#EXTINF:%.3f,", partSecs), partURI[:i]+".m4s")
			sincePDT += partSecs
		}
	}
	if !pdt.IsZero() {
		next := pdt.Add(time.Duration(math.Round(sincePDT * float64(time.Second)))) // 1.001 s is 1.000999999 s
		out = append(out, "#EXT-X-PROGRAM-DATE-TIME:"+next.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// attrSecs reads the number of seconds after prefix in a playlist line.
func attrSecs(line, prefix string) float64 {
	_, v, ok := strings.Cut(line, prefix)
	if !ok {
		return 0
	}
	v, _, _ = strings.Cut(v, ",")
	d, _ := strconv.ParseFloat(v, 64)
	return d
}

// lastSegment returns the media sequence number of a media playlist's last
// segment, the one in progress included.
func lastSegment(pl []byte) (uint64, bool) {
	var first, n uint64
	found, open := false, false
	for _, line := range strings.Split(string(pl), "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			v, err := strconv.ParseUint(strings.TrimSpace(line[len("#EXT-X-MEDIA-SEQUENCE:"):]), 10, 64)
			if err != nil {
				return 0, false
			}
			first, found = v, true
		case strings.HasPrefix(line, "#EXT-X-SKIP:"):
			if _, v, ok := strings.Cut(line, "SKIPPED-SEGMENTS="); ok {
				v, _, _ = strings.Cut(v, ",")
				k, _ := strconv.ParseUint(v, 10, 64)
				n += k
			}
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			open = true
		case strings.HasPrefix(line, "#EXTINF:"):
			n++
			open = false
		}
	}
	if open {
		n++
	}
	if !found || n == 0 {
		return 0, false
	}
	return first + n - 1, true
}

// holdStill waits a little before a playlist is answered again unchanged, so
// that a player reloading it does not spin.
func (rl *Relay) holdStill(ctx context.Context) {
	t := time.NewTimer(rl.opts.Hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// send writes obj as the answer to r (conditional and range requests too).
func (rl *Relay) send(w http.ResponseWriter, r *http.Request, obj *object) {
	h := w.Header()
	for k, v := range obj.header {
		h[k] = v
	}
	if obj.status != http.StatusOK {
		h.Del("ETag")
		h.Set("Content-Length", strconv.Itoa(len(obj.body)))
		w.WriteHeader(obj.status)
		if r.Method != http.MethodHead {
			w.Write(obj.body)
		}
		return
	}
	mod, _ := http.ParseTime(obj.header.Get("Last-Modified"))
	http.ServeContent(w, r, "", mod, bytes.NewReader(obj.body))
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "public, max-age=1")
	http.Error(w, "no such channel", http.StatusNotFound)
}

// channelOf returns the channel of a /hls/{channel}/{object} path.
func channelOf(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/hls/")
	if !ok {
		return "", false
	}
	channel, object, ok := strings.Cut(rest, "/")
	return channel, ok && channel != "" && object != "" && !strings.Contains(object, "/")
}

// playerQuery reports whether a query holds only the LL-HLS parameters
// players send, each once.
func playerQuery(raw string) bool {
	if raw == "" {
		return true
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "_HLS_msn", "_HLS_part", "_HLS_skip":
		default:
			return false
		}
		if seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}

func isMediaPlaylist(key string) bool {
	path, _, _ := strings.Cut(key, "?")
	return strings.HasSuffix(path, "/stream.m3u8")
}

// maxAge reads a Cache-Control's max-age; no-store, no-cache and private
// answers are not kept.
func maxAge(cc string) time.Duration {
	var age time.Duration
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache" || d == "private":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(d[len("max-age="):])
			if err != nil || n < 0 {
				return 0
			}
			age = time.Duration(n) * time.Second
		}
	}
	return age
}

// The relay's metric descriptions.
var (
	descFetches      = prometheus.NewDesc("onair_relay_fetches_total", "HLS objects this origin fetched from the nodes holding their channels.", nil, nil)
	descFetchedBytes = prometheus.NewDesc("onair_relay_fetched_bytes_total", "Bytes fetched from holding nodes.", nil, nil)
	descHits         = prometheus.NewDesc("onair_relay_hits_total", "Relayed HLS requests answered from what this origin kept.", nil, nil)
	descCollapsed    = prometheus.NewDesc("onair_relay_collapsed_total", "Relayed HLS requests that waited for another request's fetch of the same object.", nil, nil)
	descStale        = prometheus.NewDesc("onair_relay_stale_total", "Playlist requests answered with the last playlist while the channel's holder did not answer.", nil, nil)
	descFailures     = prometheus.NewDesc("onair_relay_failures_total", "Relayed HLS requests answered 502: the holding node did not answer.", nil, nil)
	descObjects      = prometheus.NewDesc("onair_relay_objects", "HLS objects kept from other nodes.", nil, nil)
	descBytes        = prometheus.NewDesc("onair_relay_bytes", "Bytes of HLS objects kept from other nodes.", nil, nil)

	relayDescs = []*prometheus.Desc{descFetches, descFetchedBytes, descHits, descCollapsed, descStale, descFailures,
		descObjects, descBytes}
)

// Describe sends the descriptions of the relay's metrics (prometheus.Collector).
func (rl *Relay) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range relayDescs {
		ch <- d
	}
}

// Collect sends the relay's current figures (prometheus.Collector).
func (rl *Relay) Collect(ch chan<- prometheus.Metric) {
	rl.mu.Lock()
	kept, keptBytes := len(rl.objects), rl.bytes
	rl.mu.Unlock()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descFetches, rl.fetches.Load())
	counter(descFetchedBytes, rl.fetchedBytes.Load())
	counter(descHits, rl.hits.Load())
	counter(descCollapsed, rl.collapsed.Load())
	counter(descStale, rl.stale.Load())
	counter(descFailures, rl.failures.Load())
	ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(kept))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(keptBytes))
}
