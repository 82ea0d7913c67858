// Package hlscheck checks successive reloads of an HLS media playlist against
// the rules of RFC 8216 and rfc8216bis (LL-HLS) that players depend on.
//
// Feed every reload to a Checker in order; it keeps what it needs from the
// earlier ones (target duration, media sequence, URIs seen).
package hlscheck

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Playlist is the part of a media playlist the checks look at.
type Playlist struct {
	TargetDuration int
	MediaSequence  uint64
	DiscSequence   uint64        // EXT-X-DISCONTINUITY-SEQUENCE
	PartTarget     time.Duration // 0 without EXT-X-PART-INF
	PartHoldBack   time.Duration // 0 without EXT-X-SERVER-CONTROL:PART-HOLD-BACK
	CanSkipUntil   time.Duration // 0 without EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL
	Skipped        int           // EXT-X-SKIP:SKIPPED-SEGMENTS
	Segments       []Segment
	Parts          []Part // parts of the segment still being built
	PreloadHint    bool
	PreloadHints   int    // how many EXT-X-PRELOAD-HINT tags
	HintURI        string // URI of the TYPE=PART hint
	Ended          bool
	Maps           int // EXT-X-MAP tags
	// PartsDisc is true when a discontinuity comes before the trailing parts.
	PartsDisc bool
}

// Segment is one EXTINF entry.
type Segment struct {
	MSN           uint64
	Duration      time.Duration
	URI           string
	Gap           bool
	Discontinuity bool   // EXT-X-DISCONTINUITY before it
	DiscNumber    uint64 // its discontinuity sequence number
	Parts         []Part
}

// Part is one EXT-X-PART entry.
type Part struct {
	Duration    time.Duration
	URI         string
	Independent bool
}

// Parse reads a media playlist.
func Parse(b []byte) (*Playlist, error) {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "#EXTM3U" {
		return nil, errors.New("playlist does not start with #EXTM3U")
	}
	pl := &Playlist{}
	var pending Segment
	var havePending, sawTarget bool
	for i, l := range lines[1:] {
		l = strings.TrimSpace(l)
		tag, val, _ := strings.Cut(l, ":")
		var err error
		switch {
		case l == "":
		case tag == "#EXT-X-TARGETDURATION":
			pl.TargetDuration, err = strconv.Atoi(val)
			sawTarget = true
		case tag == "#EXT-X-MEDIA-SEQUENCE":
			pl.MediaSequence, err = strconv.ParseUint(val, 10, 64)
		case tag == "#EXT-X-PART-INF":
			pl.PartTarget, err = durAttr(val, "PART-TARGET")
		case tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
			pl.DiscSequence, err = strconv.ParseUint(val, 10, 64)
		case tag == "#EXT-X-DISCONTINUITY":
			pending.Discontinuity = true
		case tag == "#EXT-X-MAP":
			pl.Maps++
		case tag == "#EXT-X-SERVER-CONTROL":
			if _, ok := attr(val, "PART-HOLD-BACK"); ok {
				pl.PartHoldBack, err = durAttr(val, "PART-HOLD-BACK")
			}
			if _, ok := attr(val, "CAN-SKIP-UNTIL"); ok && err == nil {
				pl.CanSkipUntil, err = durAttr(val, "CAN-SKIP-UNTIL")
			}
		case tag == "#EXT-X-SKIP":
			v, _ := attr(val, "SKIPPED-SEGMENTS")
			pl.Skipped, err = strconv.Atoi(v)
		case tag == "#EXTINF":
			d, _, _ := strings.Cut(val, ",")
			pending.Duration, err = secs(d)
			havePending = true
		case tag == "#EXT-X-GAP":
			pending.Gap = true
		case tag == "#EXT-X-PART":
			var p Part
			p.Duration, err = durAttr(val, "DURATION")
			p.URI, _ = attr(val, "URI")
			v, _ := attr(val, "INDEPENDENT")
			p.Independent = v == "YES"
			pending.Parts = append(pending.Parts, p)
		case tag == "#EXT-X-PRELOAD-HINT":
			pl.PreloadHint = true
			pl.PreloadHints++
			if v, _ := attr(val, "TYPE"); v == "PART" {
				pl.HintURI, _ = attr(val, "URI")
			}
		case tag == "#EXT-X-ENDLIST":
			pl.Ended = true
		case strings.HasPrefix(l, "#"):
		default:
			if !havePending {
				return nil, fmt.Errorf("line %d: URI %q without #EXTINF", i+2, l)
			}
			pending.URI = l
			pending.MSN = pl.MediaSequence + uint64(pl.Skipped) + uint64(len(pl.Segments))
			pending.DiscNumber = pl.DiscSequence
			if n := len(pl.Segments); n > 0 {
				pending.DiscNumber = pl.Segments[n-1].DiscNumber
			}
			if pending.Discontinuity && (len(pl.Segments) > 0 || pl.Skipped > 0) {
				pending.DiscNumber++
			}
			pl.Segments = append(pl.Segments, pending)
			pending, havePending = Segment{}, false
		}
		if err != nil {
			return nil, fmt.Errorf("line %d (%s): %w", i+2, tag, err)
		}
	}
	if !sawTarget {
		return nil, errors.New("no #EXT-X-TARGETDURATION")
	}
	pl.Parts = pending.Parts
	pl.PartsDisc = pending.Discontinuity
	return pl, nil
}

func attr(list, name string) (string, bool) {
	quoted, start := false, 0
	for i := 0; i <= len(list); i++ {
		if i < len(list) && list[i] == '"' {
			quoted = !quoted
		}
		if i == len(list) || (list[i] == ',' && !quoted) {
			k, v, ok := strings.Cut(list[start:i], "=")
			if ok && strings.TrimSpace(k) == name {
				return strings.Trim(v, `"`), true
			}
			start = i + 1
		}
	}
	return "", false
}

func durAttr(list, name string) (time.Duration, error) {
	v, ok := attr(list, name)
	if !ok {
		return 0, fmt.Errorf("no %s attribute", name)
	}
	return secs(v)
}

func secs(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("bad duration %q", v)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// tolerance absorbs the decimal rounding of durations written in playlists.
const tolerance = time.Millisecond

// Checker checks successive reloads of one media playlist.
type Checker struct {
	reloads  int
	target   int
	firstSeq uint64
	lastSeq  uint64
	lastDisc uint64
	segs     map[string]Segment       // segment URI -> what it was first listed as
	parts    map[string]time.Duration // part URI -> duration
	byMSN    map[uint64]Segment       // every segment seen, by number
	hint     string                   // the previous reload's part hint
	hintPos  partPos                  // where that hint pointed
}

// partPos is a part's place: segment number and index in it.
type partPos struct {
	msn  uint64
	part int
}

// Reloads returns how many playlists were checked.
func (c *Checker) Reloads() int { return c.reloads }

// Check parses one reload and checks it on its own and against the earlier
// ones. It returns every violation found, joined, or nil.
func (c *Checker) Check(b []byte) error {
	pl, err := Parse(b)
	if err != nil {
		return err
	}
	return c.CheckPlaylist(pl)
}

// CheckPlaylist is Check for an already parsed playlist.
func (c *Checker) CheckPlaylist(pl *Playlist) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.segs == nil {
		c.segs = make(map[string]Segment)
		c.parts = make(map[string]time.Duration)
		c.byMSN = make(map[uint64]Segment)
	}
	first := c.reloads == 0
	c.reloads++

	if first {
		c.target, c.firstSeq, c.lastSeq = pl.TargetDuration, pl.MediaSequence, pl.MediaSequence
	} else {
		if pl.TargetDuration != c.target {
			bad("EXT-X-TARGETDURATION changed from %d to %d", c.target, pl.TargetDuration)
		}
		if pl.MediaSequence < c.lastSeq {
			bad("EXT-X-MEDIA-SEQUENCE went back from %d to %d", c.lastSeq, pl.MediaSequence)
		}
		c.lastSeq = max(c.lastSeq, pl.MediaSequence)
		if pl.DiscSequence < c.lastDisc {
			bad("EXT-X-DISCONTINUITY-SEQUENCE went back from %d to %d", c.lastDisc, pl.DiscSequence)
		}
	}
	c.lastDisc = max(c.lastDisc, pl.DiscSequence)
	c.checkServerControl(pl, bad)
	c.checkSkip(pl, bad)

	var window time.Duration
	for _, s := range pl.Segments {
		window += s.Duration
		if r := int(math.Round(s.Duration.Seconds())); r > pl.TargetDuration {
			bad("segment %d (%s): EXTINF %.3f rounds to %d > target duration %d", s.MSN, s.URI, s.Duration.Seconds(), r, pl.TargetDuration)
		}
		if !s.Gap {
			if prev, ok := c.segs[s.URI]; ok && (prev.MSN != s.MSN || absDur(prev.Duration-s.Duration) > tolerance) {
				bad("segment URI %s reused: was MSN %d (%.3fs), now MSN %d (%.3fs)", s.URI, prev.MSN, prev.Duration.Seconds(), s.MSN, s.Duration.Seconds())
			} else if !ok {
				c.segs[s.URI] = s
			}
		}
		c.checkParts(pl, s.Parts, bad)
		if len(s.Parts) > 0 {
			var sum time.Duration
			for _, p := range s.Parts {
				sum += p.Duration
			}
			if absDur(sum-s.Duration) > time.Duration(len(s.Parts))*tolerance {
				bad("segment %d: its parts last %.3fs, its EXTINF says %.3fs", s.MSN, sum.Seconds(), s.Duration.Seconds())
			}
			c.checkPartLengths(pl, s.Parts, bad)
		}
		if prev, ok := c.byMSN[s.MSN]; ok {
			if prev.URI != s.URI && !s.Gap {
				bad("MSN %d changed URI from %s to %s", s.MSN, prev.URI, s.URI)
			}
			if prev.DiscNumber != s.DiscNumber {
				bad("segment %d: discontinuity number changed from %d to %d", s.MSN, prev.DiscNumber, s.DiscNumber)
			}
		} else {
			c.byMSN[s.MSN] = s
		}
	}
	c.checkParts(pl, pl.Parts, bad)
	c.checkPartLengths(pl, pl.Parts, bad)
	c.checkHint(pl, bad)

	// Once a segment has left the window, the window must hold three targets.
	if pl.Skipped == 0 && !first && pl.MediaSequence > c.firstSeq &&
		window+tolerance < 3*time.Duration(pl.TargetDuration)*time.Second {
		bad("window holds %.3fs, less than 3 target durations (%ds)", window.Seconds(), 3*pl.TargetDuration)
	}
	if pl.PartTarget > 0 && pl.PartHoldBack+tolerance < 3*pl.PartTarget {
		bad("PART-HOLD-BACK %.3fs is less than 3 x PART-TARGET %.3fs", pl.PartHoldBack.Seconds(), pl.PartTarget.Seconds())
	}
	if pl.Ended && pl.PreloadHint {
		bad("ended playlist still has EXT-X-PRELOAD-HINT")
	}
	return errors.Join(errs...)
}

func (c *Checker) checkParts(pl *Playlist, parts []Part, bad func(string, ...any)) {
	for _, p := range parts {
		if pl.PartTarget == 0 {
			bad("EXT-X-PART %s without EXT-X-PART-INF", p.URI)
			continue
		}
		if p.Duration > pl.PartTarget+tolerance/2 {
			bad("part %s: duration %.5f > PART-TARGET %.5f", p.URI, p.Duration.Seconds(), pl.PartTarget.Seconds())
		}
		if prev, ok := c.parts[p.URI]; ok && absDur(prev-p.Duration) > tolerance {
			bad("part URI %s reused with a different duration", p.URI)
		} else if !ok {
			c.parts[p.URI] = p.Duration
		}
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// checkServerControl checks the LL-HLS server control values against RFC 8216bis.
func (c *Checker) checkServerControl(pl *Playlist, bad func(string, ...any)) {
	td := time.Duration(pl.TargetDuration) * time.Second
	if pl.CanSkipUntil > 0 && pl.CanSkipUntil+tolerance < 6*td {
		bad("CAN-SKIP-UNTIL %.3fs is less than 6 target durations", pl.CanSkipUntil.Seconds())
	}
	if pl.Skipped > 0 && pl.CanSkipUntil == 0 {
		bad("EXT-X-SKIP without CAN-SKIP-UNTIL")
	}
	if pl.PreloadHints > 1 {
		bad("%d EXT-X-PRELOAD-HINT tags, want at most one", pl.PreloadHints)
	}
}

// checkSkip checks a delta update: the segments it leaves out must be ones
// an earlier reload listed, all of them at least CAN-SKIP-UNTIL from the end.
func (c *Checker) checkSkip(pl *Playlist, bad func(string, ...any)) {
	if pl.Skipped == 0 {
		return
	}
	var listed time.Duration
	for _, s := range pl.Segments {
		listed += s.Duration
	}
	for _, p := range pl.Parts {
		listed += p.Duration
	}
	// Walk the skipped segments from the newest: each must end at least
	// CAN-SKIP-UNTIL before the end of the playlist.
	fromEnd := listed
	for i := pl.Skipped - 1; i >= 0; i-- {
		msn := pl.MediaSequence + uint64(i)
		seg, ok := c.byMSN[msn]
		if !ok {
			bad("delta update skips segment %d, which no earlier reload listed", msn)
			return
		}
		if fromEnd+tolerance < pl.CanSkipUntil {
			bad("delta update skips segment %d, %.3fs from the end, inside CAN-SKIP-UNTIL %.3fs", msn, fromEnd.Seconds(), pl.CanSkipUntil.Seconds())
		}
		fromEnd += seg.Duration
	}
}

// checkHint checks the preload hint: it names a part not listed yet, and the
// part that takes its place in the next reload is the one it named.
func (c *Checker) checkHint(pl *Playlist, bad func(string, ...any)) {
	// Where the next part goes: after the trailing parts, or at the start of
	// the segment after the last complete one.
	next := partPos{msn: pl.MediaSequence + uint64(pl.Skipped) + uint64(len(pl.Segments)), part: len(pl.Parts)}
	if c.hint != "" {
		// The previous hint's position, if listed now, must carry its URI.
		if uri, ok := partAt(pl, c.hintPos); ok && uri != c.hint {
			bad("the part hinted as %s was listed as %s", c.hint, uri)
		}
	}
	c.hint, c.hintPos = pl.HintURI, next
	if pl.HintURI == "" {
		return
	}
	if _, listed := c.parts[pl.HintURI]; listed {
		bad("preload hint %s names a part already listed", pl.HintURI)
	}
}

// partAt returns the URI of the part at pos, if the playlist lists it.
func partAt(pl *Playlist, pos partPos) (string, bool) {
	for _, s := range pl.Segments {
		if s.MSN == pos.msn {
			if pos.part < len(s.Parts) {
				return s.Parts[pos.part].URI, true
			}
			return "", false
		}
	}
	if next := pl.MediaSequence + uint64(pl.Skipped) + uint64(len(pl.Segments)); pos.msn == next && pos.part < len(pl.Parts) {
		return pl.Parts[pos.part].URI, true
	}
	return "", false
}

// checkPartLengths checks the lower bound on part durations: at least 85 % of
// PART-TARGET, except an INDEPENDENT part and the last part of a segment.
// The last listed part of a segment in progress may turn out to be its last.
func (c *Checker) checkPartLengths(pl *Playlist, parts []Part, bad func(string, ...any)) {
	if pl.PartTarget == 0 {
		return
	}
	floor := pl.PartTarget * 85 / 100
	for i, p := range parts {
		if p.Independent || i == len(parts)-1 {
			continue
		}
		if p.Duration+tolerance < floor {
			bad("part %s: duration %.3f is under 85%% of PART-TARGET %.3f", p.URI, p.Duration.Seconds(), pl.PartTarget.Seconds())
		}
	}
}
