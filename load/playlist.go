package load

import (
	"bufio"
	"bytes"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// playlist is what the watcher needs from an HLS playlist: where a
// multivariant playlist leads, and how far a media playlist has got.
type playlist struct {
	base    *url.URL // where it was read from
	variant string   // first variant's URI, for a multivariant playlist
	target  time.Duration
	seq     uint64 // EXT-X-MEDIA-SEQUENCE
	// segments counts the segments listed; parts the EXT-X-PART lines
	// after the last one (the segment in progress, LL-HLS).
	segments, parts int
	ended           bool
}

// newest is the position of the newest segment or part listed.
type newest struct {
	next  uint64 // media sequence number of the segment after the last complete one
	parts int
}

func (p playlist) newest() newest {
	return newest{next: p.seq + uint64(p.segments), parts: p.parts}
}

// parsePlaylist reads an HLS playlist leniently: only the tags that say
// where media is, so the watcher does not depend on a server's file names
// or on its other tags.
func parsePlaylist(b []byte) (playlist, error) {
	var p playlist
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first, streamInf := true, false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			if line != "#EXTM3U" {
				return p, errors.New("not an HLS playlist (no #EXTM3U)")
			}
			first = false
			continue
		}
		tag, val, _ := strings.Cut(line, ":")
		switch {
		case line == "":
		case tag == "#EXT-X-STREAM-INF":
			streamInf = true
		case tag == "#EXT-X-TARGETDURATION":
			if n, err := strconv.ParseFloat(val, 64); err == nil {
				p.target = time.Duration(n * float64(time.Second))
			}
		case tag == "#EXT-X-MEDIA-SEQUENCE":
			p.seq, _ = strconv.ParseUint(val, 10, 64)
		case tag == "#EXT-X-SKIP":
			// A delta update: skipped segments still count.
			for _, a := range strings.Split(val, ",") {
				if k, v, ok := strings.Cut(a, "="); ok && k == "SKIPPED-SEGMENTS" {
					n, _ := strconv.Atoi(v)
					p.segments += n
				}
			}
		case tag == "#EXT-X-PART":
			p.parts++
		case tag == "#EXT-X-ENDLIST":
			p.ended = true
		case strings.HasPrefix(line, "#"):
		case streamInf:
			if p.variant == "" {
				p.variant = line
			}
			streamInf = false
		default: // a segment URI
			p.segments++
			p.parts = 0
		}
	}
	if first {
		return p, errors.New("empty playlist")
	}
	return p, sc.Err()
}
