package load

import (
	"bytes"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// playlist is what the watcher and the players need from an HLS playlist:
// where a multivariant playlist leads, how far a media playlist has got,
// and what it lets a player ask for.
type playlist struct {
	base    *url.URL // where it was read from
	variant string   // first variant's URI, for a multivariant playlist
	target  time.Duration
	// partTarget is EXT-X-PART-INF's PART-TARGET (0: no parts, not LL-HLS).
	partTarget time.Duration
	canBlock   bool // EXT-X-SERVER-CONTROL: CAN-BLOCK-RELOAD=YES
	canSkip    bool // EXT-X-SERVER-CONTROL: CAN-SKIP-UNTIL given (delta updates)
	seq        uint64
	// segments counts the segments listed (skipped ones of a delta update
	// included); parts the EXT-X-PART lines after the last one (the
	// segment in progress, LL-HLS).
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

// mediaRef is one segment or part a media playlist lists.
type mediaRef struct {
	msn  uint64
	part int    // index in its segment; -1 for the whole segment
	uri  []byte // valid only during the callback
	init []byte // the EXT-X-MAP URI in effect (nil: none); valid likewise
}

// parsePlaylist reads an HLS playlist leniently: only the tags that say
// where media is and how to ask for it, so that the tool depends neither
// on a server's file names nor on its other tags. It calls onMedia, if not
// nil, for every segment and part in order.
func parsePlaylist(b []byte, onMedia func(mediaRef)) (playlist, error) {
	var p playlist
	first, streamInf := true, false
	var init []byte
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		line = bytes.TrimSpace(line)
		if first {
			if string(line) != "#EXTM3U" {
				return p, errors.New("not an HLS playlist (no #EXTM3U)")
			}
			first = false
			continue
		}
		tag, val, _ := bytes.Cut(line, []byte{':'})
		switch {
		case len(line) == 0:
		case string(tag) == "#EXT-X-STREAM-INF":
			streamInf = true
		case string(tag) == "#EXT-X-TARGETDURATION":
			p.target = seconds(val)
		case string(tag) == "#EXT-X-PART-INF":
			p.partTarget = seconds(attr(val, "PART-TARGET"))
		case string(tag) == "#EXT-X-SERVER-CONTROL":
			p.canBlock = string(attr(val, "CAN-BLOCK-RELOAD")) == "YES"
			p.canSkip = attr(val, "CAN-SKIP-UNTIL") != nil
		case string(tag) == "#EXT-X-MEDIA-SEQUENCE":
			p.seq, _ = strconv.ParseUint(string(val), 10, 64)
		case string(tag) == "#EXT-X-SKIP":
			// A delta update: skipped segments still count.
			n, _ := strconv.Atoi(string(attr(val, "SKIPPED-SEGMENTS")))
			p.segments += n
		case string(tag) == "#EXT-X-MAP":
			init = unquote(attr(val, "URI"))
		case string(tag) == "#EXT-X-PART":
			if onMedia != nil {
				onMedia(mediaRef{msn: p.seq + uint64(p.segments), part: p.parts, uri: unquote(attr(val, "URI")), init: init})
			}
			p.parts++
		case string(tag) == "#EXT-X-ENDLIST":
			p.ended = true
		case line[0] == '#':
		case streamInf:
			if p.variant == "" {
				p.variant = string(line)
			}
			streamInf = false
		default: // a segment URI
			if onMedia != nil {
				onMedia(mediaRef{msn: p.seq + uint64(p.segments), part: -1, uri: line, init: init})
			}
			p.segments++
			p.parts = 0
		}
	}
	if first {
		return p, errors.New("empty playlist")
	}
	return p, nil
}

// attr returns the value of key in an attribute list (KEY=VALUE,...),
// quotes kept, or nil. A quoted value may hold commas.
func attr(list []byte, key string) []byte {
	for len(list) > 0 {
		k, rest, ok := bytes.Cut(list, []byte{'='})
		if !ok {
			return nil
		}
		var v []byte
		if len(rest) > 0 && rest[0] == '"' {
			end := bytes.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil
			}
			v, rest = rest[:end+2], rest[end+2:]
			_, rest, _ = bytes.Cut(rest, []byte{','})
		} else {
			v, rest, _ = bytes.Cut(rest, []byte{','})
		}
		if string(bytes.TrimSpace(k)) == key {
			return v
		}
		list = rest
	}
	return nil
}

func unquote(v []byte) []byte {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// seconds parses a decimal number of seconds; 0 if it is not one.
func seconds(v []byte) time.Duration {
	n, err := strconv.ParseFloat(string(v), 64)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n * float64(time.Second))
}
