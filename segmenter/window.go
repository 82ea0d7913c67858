package segmenter

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Errors the origin maps to HTTP statuses.
var (
	errNotFound   = errors.New("no such object")
	errBadRequest = errors.New("bad request")
	errTimeout    = errors.New("timed out waiting for the object")
)

// rendition describes one broadcast's media as the playlists name it: its
// URI prefix, its init segment and what the multivariant playlist says.
type rendition struct {
	token     string // URI prefix, unique per broadcast
	init      []byte // fMP4 init segment; nil for MPEG-TS
	created   time.Time
	codecs    string // RFC 6381 CODECS value
	width     int
	height    int
	audioOnly bool
}

// part is one LL-HLS partial segment: immutable bytes, held once.
type part struct {
	data        []byte
	dur         time.Duration
	independent bool
	created     time.Time
}

// segment is one media segment: the concatenation of its parts.
type segment struct {
	msn  uint64
	r    *rendition
	disc bool // EXT-X-DISCONTINUITY before it
	// resumed: a returning publisher's first segment. Recordings mark a
	// discontinuity there; the live playlist goes on without one, which
	// players play through (Shaka skips seconds ahead after one).
	resumed bool
	pdt     time.Time
	parts   []*part
	dur     time.Duration
	size    int
	done    bool
}

// window is what a channel's media playlist lists: the newest segments of
// its broadcasts (more than one broadcast after a codec change, with a
// discontinuity between them), the parts of the newest ones, and the part
// being filled. Every change makes a new version and wakes the requests
// waiting for one; each version is rendered at most once per form.
//
// Writers (one packager at a time) and readers (origin requests) share it
// under mu. Parts are never modified once added, so readers keep references
// to them outside the lock.
type window struct {
	cfg *config
	id  string // random: keeps ETags unique across windows and restarts

	mu       sync.Mutex
	segs     []*segment // listed, oldest first; the last one is in progress while live
	pending  *segment   // numbered, starts with the next part, not listed yet
	nextMSN  uint64     // number of the next segment opened
	discSeq  uint64     // EXT-X-DISCONTINUITY-SEQUENCE: number of segs[0]
	ended    bool       // EXT-X-ENDLIST
	closed   bool       // removed: everything answers 404
	version  uint64
	modTime  time.Time
	changed  chan struct{} // closed and replaced at every version
	renders  *renders      // the current version's playlists, once rendered
	bandPeak int           // highest segment bitrate seen, bits/s
	mv       *rendered     // the multivariant playlist last rendered
	mvs      int           // how many were rendered (for ETags)
	// partTarget is PART-TARGET, fixed by the first part's packager to fit
	// its frames (0 before: the configured one is listed).
	partTarget time.Duration
}

func newWindow(cfg *config, firstMSN, discSeq uint64) *window {
	return &window{cfg: cfg, id: randomToken(), nextMSN: firstMSN, discSeq: discSeq,
		changed: make(chan struct{}), modTime: time.Now()}
}

// bumpLocked makes a new version and wakes every waiter.
func (w *window) bumpLocked() {
	w.version++
	w.modTime = time.Now()
	w.renders = nil
	close(w.changed)
	w.changed = make(chan struct{})
}

// open starts s, the first segment of a broadcast. Like every segment, it
// is listed once its first part exists. A segment left open by the
// channel's previous writer is completed first.
func (w *window) open(s *segment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.dropPendingLocked()
	w.closeLastLocked()
	w.pendLocked(s)
	w.ended = false
	w.bumpLocked()
}

// pendLocked numbers s as the segment the next part starts.
func (w *window) pendLocked(s *segment) {
	if len(w.segs) == 0 {
		s.disc = false // the first segment's number is the sequence itself
	}
	s.msn = w.nextMSN
	w.nextMSN++
	w.pending = s
}

// dropPendingLocked forgets a segment that never got a part.
func (w *window) dropPendingLocked() {
	if w.pending != nil {
		w.pending = nil
		w.nextMSN--
	}
}

// closeLastLocked completes the newest listed segment if it is still open.
func (w *window) closeLastLocked() {
	if n := len(w.segs); n > 0 && !w.segs[n-1].done {
		w.closeLocked(w.segs[n-1])
	}
}

// fixPartTarget sets PART-TARGET to d, for the window's lifetime, unless it
// is set already, and returns it.
func (w *window) fixPartTarget(d time.Duration) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.partTarget == 0 {
		w.partTarget = d
	}
	return w.partTarget
}

// addPart appends p to s. When next is set, next is the segment the
// following part starts; s is completed (gets its EXTINF) only when that
// part exists, in the same playlist version. So a live playlist always ends
// with parts of a segment in progress and a hint that stays inside what it
// lists (video.js counts on that).
func (w *window) addPart(s *segment, p *part, next *segment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return // taken down: keep nothing
	}
	if s == w.pending {
		w.pending = nil
		w.closeLastLocked()
		w.segs = append(w.segs, s)
	}
	s.parts = append(s.parts, p)
	s.dur += p.dur
	s.size += len(p.data)
	if next != nil {
		w.pendLocked(next)
	}
	w.bumpLocked()
}

// finish completes the broadcast's last segment; with end set the playlist
// ends (EXT-X-ENDLIST), otherwise it waits for the channel's next broadcast
// to continue it.
func (w *window) finish(end bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.dropPendingLocked()
	w.closeLastLocked()
	if end {
		w.ended = true
	}
	w.bumpLocked()
}

// closeLocked marks s complete and drops what falls out of the window.
func (w *window) closeLocked(s *segment) {
	s.done = true
	if s.dur > 0 {
		if bps := int(float64(s.size*8) / s.dur.Seconds()); bps > w.bandPeak {
			w.bandPeak = bps
		}
	}
	w.trimLocked()
}

// trimLocked keeps at most SegmentCount complete segments (plus the one in progress).
func (w *window) trimLocked() {
	complete := len(w.segs)
	if complete > 0 && !w.segs[complete-1].done {
		complete--
	}
	for complete > w.cfg.segmentCount {
		if len(w.segs) > 1 && w.segs[1].disc {
			w.discSeq++
			w.segs[1].disc = false // now first: its number is the sequence itself
		}
		w.segs[0] = nil
		w.segs = w.segs[1:]
		complete--
	}
}

// close removes the window: every request answers 404 from now on.
func (w *window) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.segs = nil
	w.bumpLocked()
}

// next returns the number the next segment after this window's would get
// and the discontinuity sequence a later window must start from.
// names returns the name of every object the window lists or hints at,
// playlists first: what a cache in front of the origin may hold of it.
func (w *window) names(c *config) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []string{multivariantName, mediaName}
	segs := w.segs
	if w.pending != nil {
		segs = append(segs[:len(segs):len(segs)], w.pending)
	}
	var prev *rendition
	for _, s := range segs {
		if s.r.init != nil && s.r != prev {
			out = append(out, s.r.token+"_init.mp4")
		}
		prev = s.r
		// Every part, and the next one a preload hint may have named.
		for i := 0; c.lowLatency && i <= len(s.parts); i++ {
			out = append(out, string(c.appendPartURI(nil, s, i)))
		}
		out = append(out, string(c.appendSegmentURI(nil, s)))
	}
	return out
}

func (w *window) next() (msn, disc uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	disc = w.discSeq
	for i, s := range w.segs {
		if i > 0 && s.disc {
			disc++
		}
	}
	return w.nextMSN, disc + 1
}

// resumePoint is where another node's playlist continuing this one starts:
// after the last complete segment a player may have seen (a segment in
// progress is never completed now), with the next discontinuity sequence.
func (w *window) resumePoint() (msn, disc uint64) {
	_, disc = w.next()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.segs) - 1; i >= 0; i-- {
		if w.segs[i].done {
			return w.segs[i].msn + 1, disc
		}
	}
	if len(w.segs) > 0 {
		return w.segs[0].msn, disc
	}
	return w.nextMSN, disc
}

// position is a part's place in the stream: segment number and part index.
type position struct {
	msn  uint64
	part int
}

// tipLocked returns the newest complete part's position and whether any
// exists, and the part being filled (the preload hint) if the stream is live.
func (w *window) tipLocked() (newest position, ok bool, filling position, live bool) {
	for i := len(w.segs) - 1; i >= 0; i-- {
		if s := w.segs[i]; len(s.parts) > 0 {
			newest, ok = position{s.msn, len(s.parts) - 1}, true
			break
		}
	}
	switch n := len(w.segs); {
	case w.ended || w.closed:
	case w.pending != nil:
		filling, live = position{w.pending.msn, 0}, true
	case n > 0 && !w.segs[n-1].done:
		filling, live = position{w.segs[n-1].msn, len(w.segs[n-1].parts)}, true
	}
	return
}

// satisfiedLocked reports whether a blocking reload asking for segment msn
// (and part, if hasPart) can be answered.
func (w *window) satisfiedLocked(msn uint64, part int, hasPart bool) bool {
	if w.ended || w.closed {
		return true
	}
	if !hasPart {
		// The segment itself must be complete.
		for i := len(w.segs) - 1; i >= 0; i-- {
			if s := w.segs[i]; s.done {
				return s.msn >= msn
			}
		}
		return false
	}
	newest, ok, _, _ := w.tipLocked()
	if !ok {
		return false
	}
	// A complete segment's part past its last is the next segment's first.
	return msn < newest.msn || msn == newest.msn && part <= newest.part
}

// tooFarLocked reports whether a blocking reload asks for more than the
// protocol allows: an MSN more than two past the last complete segment, or a
// part index no segment can reach.
func (w *window) tooFarLocked(msn uint64, part int, hasPart bool) bool {
	if hasPart && part >= w.cfg.maxParts {
		return true
	}
	// One past the last complete segment.
	next := w.nextMSN
	if w.pending != nil {
		next = w.pending.msn
	}
	for i := len(w.segs) - 1; i >= 0; i-- {
		if !w.segs[i].done {
			next = w.segs[i].msn
			continue
		}
		next = w.segs[i].msn + 1
		break
	}
	return msn > next+1
}

// playlistRequest is a validated media playlist request.
type playlistRequest struct {
	blocking bool // _HLS_msn given
	msn      uint64
	hasPart  bool // _HLS_part given
	part     int
	skip     bool // _HLS_skip=YES or v2
}

// waitPlaylist waits until the window can answer rq (a plain request once a
// segment is complete) and returns that version's playlist. It
// waits on the window's own change signal: no goroutine is started and
// nothing outlives the request.
func (w *window) waitPlaylist(ctx context.Context, rq playlistRequest) (*rendered, error) {
	h := hold{limit: w.cfg.hold}
	defer h.stop()
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, errNotFound
		}
		if rq.blocking && !w.ended && w.tooFarLocked(rq.msn, rq.part, rq.hasPart) {
			w.mu.Unlock()
			return nil, errBadRequest
		}
		if w.ended || rq.blocking && w.hasPartsLocked() && w.satisfiedLocked(rq.msn, rq.part, rq.hasPart) ||
			!rq.blocking && w.completeLocked() {
			r := w.playlistLocked(rq.skip)
			w.mu.Unlock()
			return r, nil
		}
		changed := w.changed
		w.mu.Unlock()
		if err := h.wait(ctx, changed); err != nil {
			return nil, err
		}
	}
}

// hold bounds one request's waits on a window: the hold limit counts from
// its first wait, however many changes it sees that do not answer it.
type hold struct {
	limit time.Duration
	timer *time.Timer
}

// wait returns nil once changed is closed, errTimeout once the hold limit
// has passed, or ctx's error.
func (h *hold) wait(ctx context.Context, changed <-chan struct{}) error {
	if h.timer == nil {
		h.timer = time.NewTimer(h.limit)
	}
	select {
	case <-changed:
		return nil
	case <-h.timer.C:
		return errTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hold) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
}

// completeLocked reports whether a complete segment exists. A plain request
// waits for one: players without LL-HLS (ffmpeg, VLC, video.js) give up on a
// playlist that lists parts only, and LL-HLS players block for parts anyway.
func (w *window) completeLocked() bool {
	for _, s := range w.segs {
		if s.done {
			return true
		}
	}
	return false
}

// hasPartsLocked reports whether any part exists.
func (w *window) hasPartsLocked() bool {
	for _, s := range w.segs {
		if len(s.parts) > 0 {
			return true
		}
	}
	return false
}

// object is an immutable media object: an init segment, a part, or a
// segment (its parts in order).
type object struct {
	chunks  [][]byte
	size    int
	created time.Time
	r       *rendition
}

// findMedia returns the object a media URI names, waiting (up to the hold
// limit) when it names the part being filled, as a preload hint does.
func (w *window) findMedia(ctx context.Context, n name) (*object, error) {
	h := hold{limit: w.cfg.hold}
	defer h.stop()
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, errNotFound
		}
		obj, wait := w.lookupLocked(n)
		changed := w.changed
		w.mu.Unlock()
		if obj != nil {
			return obj, nil
		}
		if !wait {
			return nil, errNotFound
		}
		if err := h.wait(ctx, changed); err != nil {
			return nil, err
		}
	}
}

// lookupLocked finds the object n names; wait says it may still appear.
func (w *window) lookupLocked(n name) (obj *object, wait bool) {
	for _, s := range w.segs {
		if s.r.token != n.token {
			continue
		}
		if n.kind == kindInit {
			if s.r.init == nil {
				return nil, false
			}
			return &object{chunks: [][]byte{s.r.init}, size: len(s.r.init), created: s.r.created, r: s.r}, false
		}
		if s.msn != n.msn {
			continue
		}
		switch n.kind {
		case kindSegment:
			if !s.done || len(s.parts) == 0 {
				return nil, false
			}
			o := &object{chunks: make([][]byte, len(s.parts)), size: s.size, created: s.parts[len(s.parts)-1].created, r: s.r}
			for i, p := range s.parts {
				o.chunks[i] = p.data
			}
			return o, false
		case kindPart:
			if n.part < len(s.parts) {
				p := s.parts[n.part]
				return &object{chunks: [][]byte{p.data}, size: len(p.data), created: p.created, r: s.r}, false
			}
			_, _, filling, live := w.tipLocked()
			return nil, live && filling == position{n.msn, n.part}
		}
	}
	// The first part of the segment that is about to start, as hinted.
	if p := w.pending; p != nil && n.kind == kindPart && p.r.token == n.token && p.msn == n.msn && n.part == 0 {
		return nil, true
	}
	return nil, false
}

// isEnded reports whether the playlist has EXT-X-ENDLIST.
func (w *window) isEnded() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended
}

// waitMultivariant waits until something can be listed and returns the
// multivariant playlist for the newest broadcast, rendered once per
// broadcast and bandwidth estimate.
func (w *window) waitMultivariant(ctx context.Context) (*rendered, error) {
	h := hold{limit: w.cfg.hold}
	defer h.stop()
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, errNotFound
		}
		if pl := w.multivariantLocked(); pl != nil {
			w.mu.Unlock()
			return pl, nil
		}
		ended, changed := w.ended, w.changed
		w.mu.Unlock()
		if ended {
			return nil, errNotFound
		}
		if err := h.wait(ctx, changed); err != nil {
			return nil, err
		}
	}
}

func (w *window) multivariantLocked() *rendered {
	var r *rendition
	var size int
	var dur time.Duration
	for _, s := range w.segs {
		if len(s.parts) > 0 {
			r, size, dur = s.r, s.size, s.dur
		}
	}
	if r == nil {
		return nil
	}
	peak := w.bandPeak
	if peak == 0 && dur > 0 {
		peak = int(float64(size*8) / dur.Seconds())
	}
	body := multivariant(r, peak)
	if w.mv != nil && bytes.Equal(w.mv.body, body) {
		return w.mv
	}
	w.mv = &rendered{body: body, etag: `"` + w.id + "." + r.token + "." + strconv.Itoa(w.mvs) + `"`, modTime: time.Now()}
	w.mvs++
	return w.mv
}
