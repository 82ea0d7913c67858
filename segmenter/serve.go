package segmenter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// kind is an HLS object's kind; it decides type and caching.
type kind int

const (
	kindMultivariant kind = iota + 1
	kindMediaPlaylist
	kindInit
	kindSegment
	kindPart
)

func (k kind) String() string {
	switch k {
	case kindMultivariant:
		return "multivariant"
	case kindMediaPlaylist:
		return "playlist"
	case kindInit:
		return "init"
	case kindSegment:
		return "segment"
	case kindPart:
		return "part"
	}
	return "unknown"
}

func (k kind) isPlaylist() bool { return k == kindMultivariant || k == kindMediaPlaylist }

// classify tells an object's kind from gohlslib's file names:
// index.m3u8, {id}_stream.m3u8, {prefix}_{id}_init.mp4, _seg{n}.mp4|.ts, _part{n}.mp4.
func classify(name string) (kind, bool) {
	switch {
	case name == "index.m3u8":
		return kindMultivariant, true
	case strings.HasSuffix(name, "_stream.m3u8"):
		return kindMediaPlaylist, true
	case strings.HasSuffix(name, "_init.mp4"):
		return kindInit, true
	case strings.Contains(name, "_part") && strings.HasSuffix(name, ".mp4"):
		return kindPart, true
	case strings.Contains(name, "_seg") && (strings.HasSuffix(name, ".mp4") || strings.HasSuffix(name, ".ts")):
		return kindSegment, true
	}
	return 0, false
}

// object is one answer the origin can send.
type object struct {
	kind     kind
	body     []byte
	ctype    string
	etag     string
	modTime  time.Time
	blocking bool // answers a blocking (_HLS_msn) request
	final    bool // from an ended stream
}

// request is what a player asked a stream for, already validated.
type request struct {
	name string
	kind kind
	msn  string // _HLS_msn, as sent
	part string // _HLS_part
	skip string // _HLS_skip
}

func (st *stream) isClosed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closed
}

func (st *stream) hasFinal() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.final != nil
}

// holdTimeout is how long a request may wait for content: about three target
// durations, as rfc8216bis suggests for blocking reloads.
func (st *stream) holdTimeout() time.Duration {
	st.mu.Lock()
	t := st.target
	st.mu.Unlock()
	d := time.Duration(t) * time.Second
	if d == 0 {
		d = max(st.seg.opts.SegmentDuration, 2*time.Second)
	}
	return 3 * d
}

func (st *stream) contentType(k kind, name string) string {
	switch {
	case k.isPlaylist():
		return "application/vnd.apple.mpegurl"
	case strings.HasSuffix(name, ".ts"):
		return "video/mp2t"
	case st.audioOnl:
		return "audio/mp4"
	}
	return "video/mp4"
}

// get answers one request, from the muxer while live, from the final copy
// after the end.
func (st *stream) get(ctx context.Context, rq request) (*object, error) {
	st.mu.Lock()
	closed, ended := st.closed, st.ended
	st.mu.Unlock()
	switch {
	case closed:
		return nil, errNotFound
	case ended:
		return st.getFinal(rq)
	}
	obj, err := st.getLive(ctx, rq)
	if err != nil && !errors.Is(err, errBadRequest) {
		// The stream may have ended while the request waited (closing the
		// muxer fails what was waiting in it): serve the final copy instead.
		st.mu.Lock()
		ended, closed := st.ended, st.closed
		st.mu.Unlock()
		if ended && !closed {
			return st.getFinal(rq)
		}
	}
	return obj, err
}

func (st *stream) getFinal(rq request) (*object, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	obj := st.final[rq.name]
	if obj == nil {
		return nil, errNotFound
	}
	if rq.part != "" && rq.msn == "" {
		return nil, errBadRequest
	}
	// A playlist with EXT-X-ENDLIST answers blocking requests at once.
	return obj, nil
}

func (st *stream) getLive(ctx context.Context, rq request) (*object, error) {
	if !rq.kind.isPlaylist() {
		res, err := st.fetch(ctx, rq.name, "", st.holdTimeout())
		if err != nil {
			return nil, err
		}
		if res.status != 200 {
			return nil, errNotFound
		}
		return &object{kind: rq.kind, body: res.body, ctype: st.contentType(rq.kind, rq.name),
			etag: `"` + rq.name + `"`, modTime: st.createdAt(rq.name)}, nil
	}
	if rq.kind == kindMultivariant {
		res, err := st.fetch(ctx, rq.name, "", st.holdTimeout())
		if err != nil {
			return nil, err
		}
		if res.status != 200 {
			return nil, errNotFound
		}
		return st.playlistObject(rq.kind, res.body, false), nil
	}

	// Media playlist. Only the LL-HLS directives reach gohlslib: any other
	// query would be copied into the URIs it writes.
	q := url.Values{}
	blocking := false
	if st.lowLat {
		if rq.part != "" && rq.msn == "" {
			return nil, errBadRequest
		}
		if rq.skip == "YES" || rq.skip == "v2" {
			q.Set("_HLS_skip", rq.skip)
		}
		if rq.msn != "" {
			msn, err := strconv.ParseUint(rq.msn, 10, 64)
			if err != nil {
				return nil, errBadRequest
			}
			if rq.part != "" {
				if _, err := strconv.ParseUint(rq.part, 10, 64); err != nil {
					return nil, errBadRequest
				}
			}
			if msn >= st.msnBase {
				blocking = true
				q.Set("_HLS_msn", strconv.FormatUint(msn-st.msnBase, 10))
				if rq.part != "" {
					q.Set("_HLS_part", rq.part)
				}
			}
			// An MSN from before this broadcast is long there: answer at once.
		}
	}
	res, err := st.fetch(ctx, rq.name, q.Encode(), st.holdTimeout())
	if err != nil {
		return nil, err
	}
	if res.status == 400 && blocking {
		// gohlslib also refuses MSNs that fell out of the window; those are
		// answered with the current playlist, only ones too far ahead get 400.
		q.Del("_HLS_msn")
		q.Del("_HLS_part")
		cur, err := st.fetch(ctx, rq.name, q.Encode(), st.holdTimeout())
		if err != nil {
			return nil, err
		}
		if cur.status != 200 {
			return nil, errNotFound
		}
		msn, _ := strconv.ParseUint(rq.msn, 10, 64)
		if msn-st.msnBase > lastMSN(cur.body) {
			return nil, errBadRequest
		}
		res, blocking = cur, false
	}
	switch res.status {
	case 200:
	case 400:
		return nil, errBadRequest
	default:
		return nil, errNotFound
	}
	body, err := st.rewriteMedia(res.body, false)
	if err != nil {
		return nil, err
	}
	obj := st.playlistObject(rq.kind, body, false)
	obj.blocking = blocking
	return obj, nil
}

func (st *stream) playlistObject(k kind, body []byte, final bool) *object {
	h := fnv.New64a()
	h.Write(body)
	now := time.Now()
	return &object{kind: k, body: body, ctype: st.contentType(k, ""), final: final,
		etag: `"` + strconv.FormatUint(h.Sum64(), 36) + `"`, modTime: now}
}

// createdAt remembers when the origin first served an immutable object, for
// a stable Last-Modified. Entries older than the window are pruned.
func (st *stream) createdAt(name string) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	if t, ok := st.created[name]; ok {
		return t
	}
	now := time.Now()
	if len(st.created) > 1024 {
		keep := time.Duration(st.seg.opts.SegmentCount+2) * time.Duration(max(st.target, 2)) * time.Second
		for n, t := range st.created {
			if now.Sub(t) > keep {
				delete(st.created, n)
			}
		}
	}
	st.created[name] = now
	return now
}

// lastMSN returns gohlslib's number of the newest segment a media playlist
// lists or is building parts of.
func lastMSN(pl []byte) uint64 {
	var seq uint64
	var n uint64
	trailingParts := false
	for _, line := range strings.Split(string(pl), "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, _ = strconv.ParseUint(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
		case strings.HasPrefix(line, "#EXT-X-SKIP:"):
			if v, ok := attr(line, "SKIPPED-SEGMENTS"); ok {
				k, _ := strconv.ParseUint(v, 10, 64)
				n += k
			}
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			trailingParts = true
		case line != "" && !strings.HasPrefix(line, "#"):
			n++
			trailingParts = false
		}
	}
	last := seq + n
	if !trailingParts && last > 0 {
		last-- // the newest complete segment; parts of the next one come later
	}
	return last
}

// attr returns the value of a tag attribute, unquoted.
func attr(line, name string) (string, bool) {
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", false
	}
	for _, kv := range splitAttrs(line[i+1:]) {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// splitAttrs splits an attribute list on commas outside quotes.
func splitAttrs(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// rewriteMedia turns gohlslib's media playlist into what onair serves: the
// target duration pinned at its first value (it must never change, gohlslib
// raises it when a longer segment appears), PART-HOLD-BACK at three part
// targets (gohlslib writes 2.5), media sequence numbers shifted so they
// continue across broadcasts, a discontinuity sequence per broadcast, and for
// an ended stream EXT-X-ENDLIST with no preload hint or unfinished parts.
func (st *stream) rewriteMedia(pl []byte, ended bool) ([]byte, error) {
	lines := strings.Split(strings.TrimRight(string(pl), "\n"), "\n")
	if len(lines) == 0 || lines[0] != "#EXTM3U" {
		return nil, errors.New("muxer returned a malformed media playlist")
	}

	// First pass: what gohlslib says now.
	target := 0
	var partTarget, maxPart time.Duration
	lastURI := 0
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			target, _ = strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-TARGETDURATION:"))
		case strings.HasPrefix(l, "#EXT-X-PART-INF:"):
			if v, ok := attr(l, "PART-TARGET"); ok {
				partTarget = parseSecs(v)
			}
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			if v, ok := attr(l, "DURATION"); ok {
				maxPart = max(maxPart, parseSecs(v))
			}
		case l != "" && !strings.HasPrefix(l, "#"):
			lastURI = i
		}
	}

	st.mu.Lock()
	if st.target == 0 {
		// Segments are cut at the first keyframe past SegmentDuration, so with
		// keyframe intervals shorter than it a segment can run up to
		// SegmentDuration plus one interval; pin a bound that covers that.
		bound := st.maxKeyGap
		if st.shortGap {
			bound += st.seg.opts.SegmentDuration
		}
		st.target = max(target, int(math.Round(bound.Seconds())), int(math.Ceil(st.seg.opts.SegmentDuration.Seconds())), 1)
	} else if target > st.target && !st.warnedTD {
		st.warnedTD = true
		st.seg.metrics.targetExceeded.Add(1)
		st.log.Warn("a segment is longer than the pinned target duration; keep the keyframe interval steady",
			"pinned", st.target, "muxer", target)
	}
	pinned := st.target
	if pt := max(partTarget, maxPart); pt > st.partTarget {
		if st.partTarget != 0 {
			st.seg.metrics.partTargetRaised.Add(1)
		}
		st.partTarget = pt
	}
	pinnedPart := st.partTarget
	st.mu.Unlock()

	var b strings.Builder
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", pinned)
			continue
		case strings.HasPrefix(l, "#EXT-X-SERVER-CONTROL:"):
			holdBack := time.Duration(math.Ceil(float64(3*pinnedPart)/float64(time.Millisecond))) * time.Millisecond
			fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%s,CAN-SKIP-UNTIL=%d\n",
				secs(holdBack), 6*pinned)
			continue
		case strings.HasPrefix(l, "#EXT-X-PART-INF:"):
			fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%s\n", secs(pinnedPart))
			continue
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, err := strconv.ParseUint(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("muxer wrote a bad media sequence: %w", err)
			}
			fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", seq+st.msnBase, st.discSeq)
			continue
		case ended && strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT:"):
			continue
		case ended && i > lastURI && (strings.HasPrefix(l, "#EXT-X-PART:") || strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:")):
			continue // parts of a segment that will never be finished
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if ended {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return []byte(b.String()), nil
}

func parseSecs(v string) time.Duration {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0
	}
	return time.Duration(math.Round(f * float64(time.Second)))
}

// uris lists every URI a playlist references: plain lines and URI attributes.
func uris(pl []byte) []string {
	var out []string
	for _, l := range strings.Split(string(pl), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case !strings.HasPrefix(l, "#"):
			out = append(out, l)
		case strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT:"):
		default:
			if v, ok := attr(l, "URI"); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// end flushes the last segment, freezes the final playlists and every object
// they reference, and closes the muxer. It returns the last media sequence
// number the stream used, so the channel's next broadcast continues after it.
func (st *stream) end() uint64 {
	if st.isClosed() {
		return st.msnBase
	}
	st.flush()
	final, last := st.snapshot()
	st.mu.Lock()
	st.ended = true
	st.final = final
	close(st.endedCh)
	st.mu.Unlock()
	st.closeMuxer()
	return last
}

func (st *stream) snapshot() (map[string]*object, uint64) {
	ctx := context.Background()
	const wait = 2 * time.Second // everything exists already, or never will
	last := st.msnBase
	mv, err := st.fetch(ctx, "index.m3u8", "", wait)
	if err != nil || mv.status != 200 {
		return nil, last // nothing was ever published
	}
	final := map[string]*object{"index.m3u8": st.playlistObject(kindMultivariant, mv.body, true)}
	for _, name := range uris(mv.body) {
		if k, ok := classify(name); !ok || k != kindMediaPlaylist {
			continue
		}
		res, err := st.fetch(ctx, name, "", wait)
		if err != nil || res.status != 200 {
			continue
		}
		last = max(last, st.msnBase+lastMSN(res.body))
		body, err := st.rewriteMedia(res.body, true)
		if err != nil {
			st.log.Warn("cannot end playlist", "playlist", name, "err", err)
			continue
		}
		final[name] = st.playlistObject(kindMediaPlaylist, body, true)
		for _, u := range uris(body) {
			k, ok := classify(u)
			if !ok || k.isPlaylist() || final[u] != nil {
				continue
			}
			obj, err := st.getLive(ctx, request{name: u, kind: k})
			if err != nil {
				continue
			}
			obj.final = true
			final[u] = obj
		}
	}
	return final, last
}

// closeMuxer closes the muxer, which releases every request waiting in it,
// and waits for those calls to return.
func (st *stream) closeMuxer() {
	st.wmu.Lock()
	if !st.muxClosed { // gohlslib's Close is not idempotent
		st.muxClosed = true
		st.mux.Close()
	}
	st.wmu.Unlock()
	st.wg.Wait()
}

// close drops the stream: every request answers 404 from now on.
func (st *stream) close() {
	st.closeOnce.Do(func() {
		st.mu.Lock()
		st.closed = true
		st.final = nil
		if st.linger != nil {
			st.linger.Stop()
		}
		st.mu.Unlock()
		close(st.closedCh)
		st.closeMuxer()
	})
}
