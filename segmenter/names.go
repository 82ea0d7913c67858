package segmenter

import (
	"strconv"
	"strings"
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
	return "other"
}

func (k kind) isPlaylist() bool { return k == kindMultivariant || k == kindMediaPlaylist }

// name is a parsed object name under /hls/{channel}/:
//
//	index.m3u8               multivariant playlist
//	stream.m3u8              media playlist
//	{token}_init.mp4         fMP4 init segment of one broadcast
//	{token}_{msn}.m4s|.ts    segment
//	{token}_{msn}_{part}.m4s part
//
// token is 8 characters of [a-z0-9], random per broadcast, so a URI is never
// reused for other content, not even after a restart.
type name struct {
	kind  kind
	token string
	msn   uint64
	part  int
	ts    bool // a .ts segment
}

// parseName parses an object name; ok is false for anything onair never serves.
func parseName(s string) (n name, ok bool) {
	switch s {
	case multivariantName:
		return name{kind: kindMultivariant}, true
	case mediaName:
		return name{kind: kindMediaPlaylist}, true
	}
	base, ext, found := strings.Cut(s, ".")
	if !found || len(base) < 10 || base[8] != '_' || !isToken(base[:8]) {
		return n, false
	}
	n.token = base[:8]
	rest := base[9:]
	if rest == "init" {
		return name{kind: kindInit, token: n.token}, ext == "mp4"
	}
	msn, part, hasPart := strings.Cut(rest, "_")
	v, err := strconv.ParseUint(msn, 10, 64)
	if err != nil || len(msn) > 20 || msn[0] == '+' {
		return n, false
	}
	n.msn = v
	switch {
	case hasPart:
		i, err := strconv.Atoi(part)
		if err != nil || i < 0 || i > 1<<16 || part[0] == '+' || ext != "m4s" {
			return n, false
		}
		n.kind, n.part = kindPart, i
	case ext == "m4s":
		n.kind = kindSegment
	case ext == "ts":
		n.kind, n.ts = kindSegment, true
	default:
		return n, false
	}
	return n, true
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
