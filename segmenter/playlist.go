package segmenter

import (
	"bytes"
	"compress/gzip"
	"strconv"
	"sync"
	"time"
)

// Names of the playlists under /hls/{channel}/.
const (
	multivariantName = "index.m3u8"
	mediaName        = "stream.m3u8"
)

// rendered is one version of a playlist in one form, shared by every request
// that asks for it; its gzipped form is made at most once, on demand.
type rendered struct {
	body    []byte
	etag    string
	modTime time.Time

	gzOnce sync.Once
	gz     []byte
}

// gzipped returns the body compressed with a writer from the free list.
func (r *rendered) gzipped(free chan *gzip.Writer) []byte {
	r.gzOnce.Do(func() {
		var buf bytes.Buffer
		buf.Grow(len(r.body) / 3)
		var zw *gzip.Writer
		select {
		case zw = <-free:
			zw.Reset(&buf)
		default:
			zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		}
		zw.Write(r.body)
		zw.Close()
		select {
		case free <- zw:
		default:
		}
		r.gz = buf.Bytes()
	})
	return r.gz
}

// renders holds the current version's playlists: the full one and the delta
// update (EXT-X-SKIP), each rendered when first asked for.
type renders struct {
	full, skip *rendered
}

// playlistLocked returns the current version of the media playlist, as a
// delta update when skip is set and the window allows one.
func (w *window) playlistLocked(skip bool) *rendered {
	if w.renders == nil {
		w.renders = &renders{}
	}
	skipped := 0
	if skip && w.cfg.lowLatency && !w.ended {
		skipped = w.skippableLocked()
	}
	slot := &w.renders.full
	if skipped > 0 {
		slot = &w.renders.skip
	}
	if *slot == nil {
		form := "f"
		if skipped > 0 {
			form = "s"
		}
		*slot = &rendered{
			body:    w.renderLocked(skipped),
			etag:    `"` + w.id + "." + strconv.FormatUint(w.version, 36) + form + `"`,
			modTime: w.modTime,
		}
	}
	return *slot
}

// skippableLocked returns how many of the oldest segments a delta update may
// leave out: whole segments that end at least CAN-SKIP-UNTIL before the end
// of the playlist, never past a discontinuity (a client merging the update
// must not have to count discontinuities it was not shown).
func (w *window) skippableLocked() int {
	var total time.Duration
	for _, s := range w.segs {
		total += s.dur
	}
	n := 0
	var end time.Duration
	for i, s := range w.segs {
		if !s.done || (i > 0 && (s.disc || s.r != w.segs[0].r)) {
			break
		}
		end += s.dur
		if total-end < w.cfg.skipUntil {
			break
		}
		n = i + 1
	}
	return n
}

// renderLocked writes the media playlist, leaving out the first skipped segments.
func (w *window) renderLocked(skipped int) []byte {
	c := w.cfg
	b := make([]byte, 0, 256+len(w.segs)*(96+c.maxParts*56))
	b = append(b, "#EXTM3U\n#EXT-X-VERSION:"...)
	b = strconv.AppendInt(b, int64(c.version), 10)
	b = append(b, "\n#EXT-X-TARGETDURATION:"...)
	b = strconv.AppendInt(b, int64(c.targetSecs), 10)
	b = append(b, '\n')
	if c.lowLatency {
		b = append(b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL="...)
		b = appendSecs(b, c.skipUntil)
		b = append(b, ",PART-HOLD-BACK="...)
		pt := w.partTarget
		if pt == 0 {
			pt = c.partTarget
		}
		b = appendSecs(b, 3*pt)
		b = append(b, "\n#EXT-X-PART-INF:PART-TARGET="...)
		b = appendSecs(b, pt)
		b = append(b, '\n')
	}
	first := w.nextMSN
	if len(w.segs) > 0 {
		first = w.segs[0].msn
	}
	b = append(b, "#EXT-X-MEDIA-SEQUENCE:"...)
	b = strconv.AppendUint(b, first, 10)
	b = append(b, "\n#EXT-X-DISCONTINUITY-SEQUENCE:"...)
	b = strconv.AppendUint(b, w.discSeq, 10)
	b = append(b, '\n')
	if skipped > 0 {
		b = append(b, "#EXT-X-SKIP:SKIPPED-SEGMENTS="...)
		b = strconv.AppendInt(b, int64(skipped), 10)
		b = append(b, '\n')
	}

	// Parts are listed for the segments that start within three target
	// durations of the end (rfc8216bis); older ones only as whole segments.
	partsFrom := len(w.segs)
	var fromEnd time.Duration
	for i := len(w.segs) - 1; i >= 0; i-- {
		fromEnd += w.segs[i].dur
		if fromEnd > 3*c.target {
			break
		}
		partsFrom = i
	}

	var prev *rendition
	for i := skipped; i < len(w.segs); i++ {
		s := w.segs[i]
		if !s.done && (!c.lowLatency || len(s.parts) == 0) {
			break // not listed until it has parts (LL-HLS) or is complete
		}
		if s.disc && i > 0 {
			b = append(b, "#EXT-X-DISCONTINUITY\n"...)
		}
		if s.r.init != nil && s.r != prev {
			b = append(b, `#EXT-X-MAP:URI="`...)
			b = append(b, s.r.token...)
			b = append(b, "_init.mp4\"\n"...)
		}
		prev = s.r
		b = append(b, "#EXT-X-PROGRAM-DATE-TIME:"...)
		b = s.pdt.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, '\n')
		if c.lowLatency && (i >= partsFrom || !s.done) {
			for j, p := range s.parts {
				b = append(b, "#EXT-X-PART:DURATION="...)
				b = appendSecs(b, p.dur)
				b = append(b, `,URI="`...)
				b = c.appendPartURI(b, s, j)
				b = append(b, '"')
				if p.independent {
					b = append(b, ",INDEPENDENT=YES"...)
				}
				b = append(b, '\n')
			}
		}
		if !s.done {
			break
		}
		b = append(b, "#EXTINF:"...)
		b = appendSecs(b, s.dur)
		b = append(b, ",\n"...)
		b = c.appendSegmentURI(b, s)
		b = append(b, '\n')
	}
	if w.ended {
		return append(b, "#EXT-X-ENDLIST\n"...)
	}
	if c.lowLatency {
		// The hint names the part being filled. A new broadcast's first part
		// is not hinted: its discontinuity and init segment come first.
		if s, i, ok := w.hintLocked(prev); ok {
			b = append(b, `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`...)
			b = c.appendPartURI(b, s, i)
			b = append(b, "\"\n"...)
		}
	}
	return b
}

// hintLocked returns the segment and index of the part the preload hint
// names, if there is one to name; prev is the last listed segment's rendition.
func (w *window) hintLocked(prev *rendition) (*segment, int, bool) {
	if _, _, _, live := w.tipLocked(); !live {
		return nil, 0, false
	}
	if p := w.pending; p != nil {
		return p, 0, !p.disc && p.r == prev
	}
	last := w.segs[len(w.segs)-1]
	return last, len(last.parts), true
}

func (c *config) appendSegmentURI(b []byte, s *segment) []byte {
	b = append(b, s.r.token...)
	b = append(b, '_')
	b = strconv.AppendUint(b, s.msn, 10)
	if c.mpegts {
		return append(b, ".ts"...)
	}
	return append(b, ".m4s"...)
}

func (c *config) appendPartURI(b []byte, s *segment, i int) []byte {
	b = append(b, s.r.token...)
	b = append(b, '_')
	b = strconv.AppendUint(b, s.msn, 10)
	b = append(b, '_')
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, ".m4s"...)
}

// appendSecs writes d in seconds with millisecond precision.
func appendSecs(b []byte, d time.Duration) []byte {
	ms := (d + time.Millisecond/2) / time.Millisecond
	b = strconv.AppendInt(b, int64(ms/1000), 10)
	b = append(b, '.')
	frac := int64(ms % 1000)
	if frac < 100 {
		b = append(b, '0')
	}
	if frac < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, frac, 10)
}

// multivariant renders the multivariant playlist for r: one variant, audio
// and video muxed, with its codecs, resolution and peak bitrate.
func multivariant(r *rendition, peak int) []byte {
	band := max(peak*11/10, 64000)
	// Two significant digits: the value is an estimate, and a stable one lets
	// caches and ETags stay put while the peak creeps up.
	for scale := 1; ; scale *= 10 {
		if band < 100*scale {
			band = (band + scale - 1) / scale * scale
			break
		}
	}
	b := make([]byte, 0, 192)
	b = append(b, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH="...)
	b = strconv.AppendInt(b, int64(band), 10)
	if r.codecs != "" {
		b = append(b, `,CODECS="`...)
		b = append(b, r.codecs...)
		b = append(b, '"')
	}
	if r.width > 0 && r.height > 0 {
		b = append(b, ",RESOLUTION="...)
		b = strconv.AppendInt(b, int64(r.width), 10)
		b = append(b, 'x')
		b = strconv.AppendInt(b, int64(r.height), 10)
	}
	b = append(b, '\n')
	b = append(b, mediaName...)
	return append(b, '\n')
}
