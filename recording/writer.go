package recording

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onairhq/onair/ingest"
)

// op is one thing for a Writer's goroutine to do.
type op struct {
	data              []byte
	dur               time.Duration
	first, last, disc bool
	pdt               time.Time
}

// segEntry is a segment of a recording as its playlist lists it.
type segEntry struct {
	dur  time.Duration
	disc bool
	pdt  time.Time
}

// Writer records one broadcast. Part and End are called on the packager's
// goroutine and never wait on the disk: the writing is done by a goroutine
// of the Writer's own, behind a bounded queue.
type Writer struct {
	r    *Recorder
	dir  string
	meta Meta

	ops     chan op
	pending atomic.Int64           // bytes queued, not written yet
	stopped atomic.Bool            // no more parts are taken
	why     atomic.Pointer[string] // why it stopped before its broadcast ended
	hidden  atomic.Bool            // taken down: not served
	endOnce sync.Once
	endc    chan struct{}
	reason  ingest.EndReason // set before endc closes
	done    chan struct{}

	// The writing goroutine's own.
	seg      *os.File
	segs     []segEntry
	open     bool // a segment is being written
	cur      segEntry
	curIndex int
	log      *os.File // parts.log
	list     *os.File // index.m3u8, appended while live
	target   int      // EXT-X-TARGETDURATION of the live playlist
	broken   bool     // a write failed: nothing more is written
}

func (w *Writer) String() string { return w.meta.Channel + "/" + w.meta.ID }

// Part implements segmenter.Sink.
func (w *Writer) Part(data []byte, dur time.Duration, first, last, disc bool, pdt time.Time) {
	if w.stopped.Load() {
		return
	}
	if w.pending.Load()+int64(len(data)) > w.r.opts.QueueBytes {
		w.stop("the disk cannot keep up", "slow_disk")
		return
	}
	w.pending.Add(int64(len(data)))
	select {
	case w.ops <- op{data: data, dur: dur, first: first, last: last, disc: disc, pdt: pdt}:
	default:
		w.pending.Add(-int64(len(data)))
		w.stop("the disk cannot keep up", "slow_disk")
	}
}

// End implements segmenter.Sink.
func (w *Writer) End(reason ingest.EndReason) {
	w.endOnce.Do(func() {
		if reason == ingest.EndTakenDown {
			w.hidden.Store(true) // not served from now on
		}
		w.reason = reason
		close(w.endc)
	})
}

// stop takes no more parts; the writing goroutine finishes what it has.
func (w *Writer) stop(why, metric string) {
	if w.stopped.Swap(true) {
		return
	}
	w.why.Store(&why)
	w.r.metrics.failed(metric)
	w.r.log.Error("recording stopped; the live stream goes on", "recording", w.String(), "why", why)
}

// run writes until End, then finishes the recording.
func (w *Writer) run() {
	defer close(w.done)
	for {
		select {
		case o := <-w.ops:
			w.write(o)
		case <-w.endc:
			for {
				select {
				case o := <-w.ops:
					w.write(o)
				default:
					w.finish()
					return
				}
			}
		}
	}
}

// write appends one part, opening and closing segments as it says.
func (w *Writer) write(o op) {
	defer w.pending.Add(-int64(len(o.data)))
	if w.broken {
		return
	}
	if o.first || !w.open {
		if w.open {
			w.closeSegment()
		}
		w.cur = segEntry{disc: o.disc, pdt: o.pdt}
		w.curIndex = len(w.segs)
		f, err := os.OpenFile(filepath.Join(w.dir, segmentFile(w.curIndex)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			w.fail(err)
			return
		}
		w.seg, w.open = f, true
	}
	if _, err := w.seg.Write(o.data); err != nil {
		w.fail(err)
		return
	}
	// The part is on disk: now it counts (a crash before this line loses it only).
	line := fmt.Sprintf("%d %d %d %d %d\n", w.curIndex, len(o.data), o.dur, b2i(w.cur.disc), w.cur.pdt.UnixNano())
	if _, err := w.log.WriteString(line); err != nil {
		w.fail(err)
		return
	}
	w.cur.dur += o.dur
	w.meta.Size += int64(len(o.data))
	w.r.metrics.bytes.Add(uint64(len(o.data)))
	if o.last {
		w.closeSegment()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// closeSegment completes the segment being written and lists it.
func (w *Writer) closeSegment() {
	if !w.open {
		return
	}
	w.open = false
	if err := w.seg.Close(); err != nil {
		w.fail(err)
		return
	}
	w.segs = append(w.segs, w.cur)
	if len(w.segs) == 3 {
		w.r.thumbnail(w) // a few seconds in: past a black first frame or a fade-in
	}
	w.meta.Duration += w.cur.dur
	w.meta.Segments = len(w.segs)
	// The description first: the server serves a segment once it counts it,
	// and players learn of it from the playlist, written after.
	if err := writeMeta(w.dir, w.meta); err != nil {
		w.fail(err)
		return
	}
	if secs := targetOf(w.cur.dur); secs > w.target {
		// A longer segment than the header allows: the live playlist is
		// written again with a target that holds it (rare: a long GOP).
		w.target = secs
		if err := w.rewriteList(false); err != nil {
			w.fail(err)
		}
		return
	}
	if _, err := w.list.WriteString(segmentLines(w.curIndex, w.cur)); err != nil {
		w.fail(err)
	}
}

// fail stops the recording for a write error; what is complete stays playable.
func (w *Writer) fail(err error) {
	why, metric := "cannot write the recording: "+err.Error(), "write_error"
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		why, metric = "the disk is full ("+err.Error()+")", "disk_full"
	}
	w.stop(why, metric)
	w.broken = true
	if w.open {
		w.seg.Close()
		w.open = false
	}
}

// finish ends the recording: the playlist becomes final (VOD).
func (w *Writer) finish() {
	if w.open && w.cur.dur > 0 && !w.broken {
		w.closeSegment()
	}
	if w.open {
		w.seg.Close()
		w.open = false
	}
	w.log.Close()
	w.list.Close()
	w.meta.State = StateComplete
	if why := w.why.Load(); why != nil {
		w.meta.Stopped = *why
	}
	if w.hidden.Load() {
		w.meta.State = StateHidden
	}
	if err := w.rewriteList(true); err != nil {
		w.r.log.Error("recording's final playlist not written", "recording", w.String(), "err", err)
	}
	if err := writeMeta(w.dir, w.meta); err != nil {
		w.r.log.Error("recording's description not written", "recording", w.String(), "err", err)
	}
	w.r.finished(w)
}

// rewriteList writes the whole playlist: final (VOD, ended) or live (EVENT,
// reopened for appending).
func (w *Writer) rewriteList(final bool) error {
	path := filepath.Join(w.dir, playlistFile)
	body := renderPlaylist(w.segs, w.target, final)
	if final {
		return writeFileAtomic(path, []byte(body))
	}
	if err := writeFileAtomic(path, []byte(body)); err != nil {
		return err
	}
	if w.list != nil {
		w.list.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	w.list = f
	return err
}

// targetOf is a segment's duration rounded to whole seconds, as EXTINF is checked against it.
func targetOf(d time.Duration) int {
	return max(1, int(math.Round(d.Seconds())))
}

// renderPlaylist is a recording's playlist. A live one (EVENT) gets a
// segment's lines appended as each completes; a final one (VOD) is whole.
func renderPlaylist(segs []segEntry, target int, final bool) string {
	var b strings.Builder
	typ := "EVENT"
	if final {
		typ = "VOD"
		target = 1
		for _, s := range segs {
			target = max(target, targetOf(s.dur))
		}
	}
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-PLAYLIST-TYPE:%s\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=%q\n", target, typ, initFile)
	for i, s := range segs {
		if i == 0 {
			s.disc = false
		}
		b.WriteString(segmentLines(i, s))
	}
	if final {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.String()
}

// segmentLines is one segment's entry in a playlist.
func segmentLines(i int, s segEntry) string {
	var b strings.Builder
	if s.disc && i > 0 {
		b.WriteString("#EXT-X-DISCONTINUITY\n")
	}
	if (i == 0 || s.disc) && !s.pdt.IsZero() {
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.pdt.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	fmt.Fprintf(&b, "#EXTINF:%.5f,\n%s\n", s.dur.Seconds(), segmentFile(i))
	return b.String()
}

// recoverDir finishes a recording that onair stopped writing without ending
// it (a crash, a power cut): its segments are rebuilt from parts.log, which
// lists only parts that reached the disk; anything after them is cut off.
func recoverDir(dir string, m Meta) (Meta, error) {
	f, err := os.Open(filepath.Join(dir, partsLog))
	if err != nil {
		return m, err
	}
	defer f.Close()
	var segs []segEntry
	sizes := map[int]int64{}
	m.Size = 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			break // a line cut short by the crash
		}
		var v [5]int64
		ok := true
		for i, s := range fs {
			n, err := strconv.ParseInt(s, 10, 64)
			ok = ok && err == nil
			v[i] = n
		}
		idx := int(v[0])
		if !ok || idx < len(segs)-1 || idx > len(segs) {
			break
		}
		if idx == len(segs) {
			segs = append(segs, segEntry{disc: v[3] == 1, pdt: time.Unix(0, v[4])})
		}
		segs[idx].dur += time.Duration(v[2])
		sizes[idx] += v[1]
		m.Size += v[1]
	}
	for i := range segs {
		if err := os.Truncate(filepath.Join(dir, segmentFile(i)), sizes[i]); err != nil {
			return m, fmt.Errorf("recover %s: %w", dir, err)
		}
	}
	os.Remove(filepath.Join(dir, segmentFile(len(segs)))) // a segment no part of which is listed
	m.Duration, m.Segments = 0, len(segs)
	for _, s := range segs {
		m.Duration += s.dur
	}
	m.State = StateComplete
	if m.Stopped == "" {
		m.Stopped = "onair stopped while recording; recovered up to the last part written"
	}
	if err := writeFileAtomic(filepath.Join(dir, playlistFile), []byte(renderPlaylist(segs, 1, true))); err != nil {
		return m, err
	}
	return m, writeMeta(dir, m)
}
