package load

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// player is one simulated viewer. Low-latency playlists (parts and
// CAN-BLOCK-RELOAD) it follows as hls.js does in low-latency mode: a
// blocking reload for the part after the newest listed, then every newly
// listed part. Other playlists it reloads every half target duration,
// fetching every new segment. One goroutine runs it; its connection is
// kept alive between requests.
type player struct {
	run   *Play
	index int

	media   string // the media playlist's URL, without query
	baseDir string // media up to its last slash, for plain relative URIs
	baseURL *url.URL

	body   bytes.Buffer // the latest playlist, decompressed
	zr     *gzip.Reader
	cursor position // newest media fetched (or skipped at the start)
	init   string   // the init segment last fetched
	fresh  []ref    // media listed after cursor, from the latest playlist
	parts  bool     // fetch parts (low-latency) rather than segments

	// Advance tracking: the newest position listed and when it first was.
	appeared bool
	pos      newest
	since    time.Time
	target   time.Duration

	stats playerStats

	state       atomic.Int32
	lastAdvance atomic.Int64 // unix ns, for Progress
	limit       atomic.Int64 // stall limit, ns (0 until known)
}

// position orders media: segment number, then part index (-1: the whole segment).
type position struct {
	msn  uint64
	part int
}

func (a position) after(b position) bool {
	return a.msn > b.msn || a.msn == b.msn && a.part > b.part
}

// follows says whether a comes right after b: the next part of the same
// segment or the first of the next, or the next segment. A segment's last
// part cannot be told from the playlist once it is gone, so a jump from
// any part to the next segment's first counts as following.
func (a position) follows(b position) bool {
	switch {
	case a.part < 0: // segments
		return a.msn <= b.msn+1
	case a.msn == b.msn:
		return a.part <= b.part+1
	case a.msn == b.msn+1:
		return a.part == 0
	}
	return false
}

// ref is a media URI to fetch.
type ref struct {
	pos       position
	uri, init string
}

// playerStats are a player's figures inside the measurement window.
type playerStats struct {
	playlistReqs, mediaReqs   int64
	playlistBytes, mediaBytes int64
	parts, segments           int64
	gaps                      int // media skipped: the next fetched was not the one after the last
	errors                    map[string]int
	advances, stalls          int
	maxStill                  time.Duration
	blocking                  []reload
	plain, media              []time.Duration
}

// reload is one answered blocking reload: what it asked for, when it was
// sent and answered (ns since the run's start).
type reload struct {
	asked          newest
	sent, answered int64
}

func newPlayer(run *Play, i int) *player {
	return &player{run: run, index: i, stats: playerStats{errors: map[string]int{}}}
}

// play runs the player until ctx ends or the playlist ends.
func (pl *player) play(ctx context.Context) {
	pl.state.Store(playerOpening)
	first, err := pl.open(ctx)
	for err != nil {
		if !sleepCtx(ctx, defaultRetry) {
			return
		}
		first, err = pl.open(ctx)
	}
	pl.state.Store(playerPlaying)
	var last playlist
	if first.partTarget > 0 && first.canBlock {
		last = pl.lowLatency(ctx, first)
	} else {
		last = pl.plain(ctx, first)
	}
	if last.ended {
		pl.state.Store(playerEnded)
	} else {
		pl.still(time.Now()) // the interval open when the run ended
	}
}

// open reads the entry URL and, if it is multivariant, its first
// variant's media playlist (plainly, without directives, as a player's
// first load is); it returns the media playlist.
func (pl *player) open(ctx context.Context) (playlist, error) {
	u := pl.run.opts.URL
	p, err := pl.getPlaylist(ctx, u, nil)
	if err != nil {
		return p, err
	}
	if p.variant != "" {
		ref, err := url.Parse(p.variant)
		if err != nil {
			pl.fail("playlist unreadable")
			return p, err
		}
		u = p.base.ResolveReference(ref).String()
		if p, err = pl.getPlaylist(ctx, u, nil); err != nil {
			return p, err
		}
		if p.variant != "" {
			pl.fail("playlist unreadable")
			return p, errors.New("variant playlist is multivariant too")
		}
	}
	pl.media, _, _ = strings.Cut(u, "?")
	pl.baseURL, _ = url.Parse(pl.media)
	pl.baseDir = pl.media[:strings.LastIndexByte(pl.media, '/')+1]
	return p, nil
}

// lowLatency loops over blocking reloads, fetching every new part, until
// ctx or the playlist ends; it returns the last playlist.
func (pl *player) lowLatency(ctx context.Context, p playlist) playlist {
	pl.parts = true
	// Start with the parts of the segment in progress, as a player joining
	// at the live edge does.
	pl.cursor = position{p.newest().next, -1}
	pl.collect()
	pl.observe(p, time.Now())
	pl.fetchFresh(ctx)
	skip := ""
	if p.canSkip && !pl.run.opts.NoDelta {
		skip = "&_HLS_skip=YES"
	}
	plainNext := false // after a failure: a plain reload to find the edge again
	for ctx.Err() == nil && !p.ended {
		asked := p.newest()
		u := pl.media
		if !plainNext {
			u += "?_HLS_msn=" + strconv.FormatUint(asked.next, 10) + "&_HLS_part=" + strconv.Itoa(asked.parts) + skip
		}
		sent := time.Now()
		next, err := pl.getPlaylist(ctx, u, pl.consider)
		answered := time.Now()
		if err != nil {
			plainNext = true
			if !sleepCtx(ctx, max(p.partTarget, 100*time.Millisecond)) {
				return p
			}
			continue
		}
		if !plainNext && pl.inWindow(sent) {
			pl.stats.blocking = append(pl.stats.blocking, reload{asked: asked,
				sent: int64(sent.Sub(pl.run.start)), answered: int64(answered.Sub(pl.run.start))})
		}
		plainNext = false
		p = next
		advanced := pl.observe(p, answered)
		pl.fetchFresh(ctx)
		if !advanced && !p.ended && !sleepCtx(ctx, p.partTarget) {
			return p // an answer that did not advance: do not spin on a server that does not block
		}
	}
	return p
}

// plain reloads the playlist every half target duration, fetching every
// new segment, until ctx or the playlist ends; it returns the last playlist.
func (pl *player) plain(ctx context.Context, p playlist) playlist {
	// Start with the newest segment.
	pl.cursor = position{p.newest().next - 1, -2}
	if p.segments == 0 {
		pl.cursor = position{p.seq, -2}
	}
	pl.collect()
	pl.observe(p, time.Now())
	pl.fetchFresh(ctx)
	for ctx.Err() == nil && !p.ended {
		if !sleepCtx(ctx, max(p.target/2, 50*time.Millisecond)) {
			return p
		}
		sent := time.Now()
		next, err := pl.getPlaylist(ctx, pl.media, pl.consider)
		if err != nil {
			continue
		}
		if pl.inWindow(sent) {
			pl.stats.plain = append(pl.stats.plain, time.Since(sent))
		}
		p = next
		pl.observe(p, time.Now())
		pl.fetchFresh(ctx)
	}
	return p
}

// collect lists the media the playlist last read names after the cursor
// (for a playlist read without a callback, such as the first).
func (pl *player) collect() {
	pl.fresh = pl.fresh[:0]
	_, _ = parsePlaylist(pl.body.Bytes(), pl.consider)
}

// consider keeps a listed part (low-latency) or segment if it is newer
// than the cursor.
func (pl *player) consider(r mediaRef) {
	if (r.part >= 0) != pl.parts {
		return
	}
	pos := position{r.msn, r.part}
	if !pos.after(pl.cursor) {
		return
	}
	f := ref{pos: pos, uri: string(r.uri), init: pl.init}
	if string(r.init) != pl.init { // compared without a copy; copied only when new
		f.init = string(r.init)
	}
	pl.fresh = append(pl.fresh, f)
}

// fetchFresh fetches the media collected, in order, the init segment
// first when it changes.
func (pl *player) fetchFresh(ctx context.Context) {
	for _, f := range pl.fresh {
		if ctx.Err() != nil {
			return
		}
		if f.init != "" && f.init != pl.init {
			if pl.getMedia(ctx, pl.resolve(f.init)) {
				pl.init = f.init
			}
		}
		ok := pl.getMedia(ctx, pl.resolve(f.uri))
		if pl.inWindow(time.Now()) {
			if !f.pos.follows(pl.cursor) {
				pl.stats.gaps++
			}
			if ok && pl.parts {
				pl.stats.parts++
			} else if ok {
				pl.stats.segments++
			}
		}
		pl.cursor = f.pos
	}
	pl.fresh = pl.fresh[:0]
}

// resolve makes a playlist's URI absolute; a plain file name (what most
// servers list) without parsing.
func (pl *player) resolve(uri string) string {
	if !strings.ContainsAny(uri, "/:?#%") {
		return pl.baseDir + uri
	}
	r, err := url.Parse(uri)
	if err != nil {
		return pl.baseDir + uri
	}
	return pl.baseURL.ResolveReference(r).String()
}

// observe tracks the newest position p lists and reports whether it
// advanced; a wait longer than the stall limit counts as a stall.
func (pl *player) observe(p playlist, now time.Time) bool {
	if p.target > 0 && p.target != pl.target {
		pl.target = p.target
		pl.limit.Store(int64(pl.run.opts.StallAfter * float64(p.target)))
	}
	n := p.newest()
	switch {
	case !pl.appeared:
		pl.appeared, pl.pos, pl.since = true, n, now
	case n != pl.pos:
		pl.still(now)
		pl.pos, pl.since = n, now
		if pl.inWindow(now) {
			pl.stats.advances++
		}
	default:
		return false
	}
	pl.lastAdvance.Store(now.UnixNano())
	return true
}

// still records the time since the last advance, ending at now.
func (pl *player) still(now time.Time) {
	d := now.Sub(pl.since)
	if !pl.appeared || !pl.inWindow(now) {
		return
	}
	pl.stats.maxStill = max(pl.stats.maxStill, d)
	if limit := time.Duration(pl.limit.Load()); limit > 0 && d > limit {
		pl.stats.stalls++
		pl.run.stalls.Add(1)
	}
}

// inWindow says whether t falls in the measurement window.
func (pl *player) inWindow(t time.Time) bool { return !t.Before(pl.run.measureFrom) }

func (pl *player) fail(what string) {
	pl.run.errs.Add(1)
	if pl.inWindow(time.Now()) {
		pl.stats.errors[what]++
	}
}

// getPlaylist reads a playlist into pl.body and parses it, calling
// onMedia for each segment and part (after clearing pl.fresh).
func (pl *player) getPlaylist(ctx context.Context, u string, onMedia func(mediaRef)) (playlist, error) {
	pl.body.Reset()
	if err := pl.get(ctx, u, true); err != nil {
		return playlist{}, err
	}
	pl.fresh = pl.fresh[:0]
	p, err := parsePlaylist(pl.body.Bytes(), onMedia)
	if err != nil {
		pl.fail("playlist unreadable")
		return p, fmt.Errorf("%s: %w", u, err)
	}
	p.base, _ = url.Parse(u)
	return p, nil
}

// getMedia fetches a media object, reading and discarding its body.
func (pl *player) getMedia(ctx context.Context, u string) bool {
	sent := time.Now()
	if err := pl.get(ctx, u, false); err != nil {
		return false
	}
	if pl.inWindow(sent) {
		pl.stats.media = append(pl.stats.media, time.Since(sent))
	}
	return true
}

// errStatus is an answer other than 200.
type errStatus int

func (e errStatus) Error() string { return "HTTP " + strconv.Itoa(int(e)) }

// get makes one request and counts it: a playlist's body goes into
// pl.body (gzip undone), media is read to its end and dropped.
func (pl *player) get(ctx context.Context, u string, isPlaylist bool) error {
	kind := "media"
	if isPlaylist {
		kind = "playlist"
	}
	rctx, cancel := context.WithTimeout(ctx, pl.run.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		pl.fail(kind + " bad URL")
		return err
	}
	if isPlaylist {
		req.Header.Set("Accept-Encoding", "gzip") // as browsers ask; the transport leaves it to us
	}
	sent := time.Now()
	res, err := pl.run.opts.Client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			pl.fail(kind + " network error")
		}
		return err
	}
	defer res.Body.Close()
	cr := &countReader{r: res.Body}
	switch {
	case res.StatusCode != http.StatusOK, !isPlaylist:
		err = discard(cr)
	case res.Header.Get("Content-Encoding") == "gzip":
		err = pl.gunzip(cr)
	default:
		_, err = pl.body.ReadFrom(cr)
	}
	pl.count(isPlaylist, sent, cr.n)
	if ctx.Err() != nil {
		return ctx.Err() // the run ended: neither an error nor a figure
	}
	if err != nil {
		pl.fail(kind + " network error")
		return err
	}
	if res.StatusCode != http.StatusOK {
		pl.fail(kind + " HTTP " + strconv.Itoa(res.StatusCode))
		return errStatus(res.StatusCode)
	}
	return nil
}

func (pl *player) gunzip(r io.Reader) error {
	var err error
	if pl.zr == nil {
		pl.zr, err = gzip.NewReader(r)
	} else {
		err = pl.zr.Reset(r)
	}
	if err != nil {
		return err
	}
	_, err = pl.body.ReadFrom(pl.zr)
	return err
}

// count adds a request and its body bytes (as sent: compressed) to the
// totals and, if sent in the window, to the player's figures.
func (pl *player) count(isPlaylist bool, sent time.Time, n int64) {
	r := pl.run
	r.bytes.Add(n)
	if isPlaylist {
		r.playlistReqs.Add(1)
	} else {
		r.mediaReqs.Add(1)
	}
	if !pl.inWindow(sent) {
		return
	}
	if isPlaylist {
		pl.stats.playlistReqs++
		pl.stats.playlistBytes += n
	} else {
		pl.stats.mediaReqs++
		pl.stats.mediaBytes += n
	}
}

// readBuffers hold media while it is read and dropped: large, so that a
// part takes few read calls, and pooled, so that only the players reading
// at the moment hold one.
var readBuffers = sync.Pool{New: func() any { return new([256 << 10]byte) }}

// discard reads r to its end.
func discard(r io.Reader) error {
	buf := readBuffers.Get().(*[256 << 10]byte)
	defer readBuffers.Put(buf)
	for {
		_, err := r.Read(buf[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
