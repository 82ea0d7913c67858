package ingest

import (
	"encoding/binary"
	"fmt"
)

// This file holds the guard in front of go-rtmp's chunk reader. go-rtmp
// (v0.0.7) buffers every partial message in full on every chunk stream a
// client opens, never enforces its MaxMessageSize, panics on a few malformed
// headers, misreads the 3-byte chunk stream ID form, and does not expect the
// extended timestamp that ffmpeg (and the specification) put on type-3 chunks
// once timestamps pass 0xFFFFFF ms. The guard follows the chunk stream as the
// bytes pass through onair's conn, before go-rtmp reads them, keeps the same
// per-chunk-stream state go-rtmp keeps, and refuses the connection before
// go-rtmp sees anything it cannot handle safely.

// Limits the chunk guard enforces. Real encoders stay far below each of them:
// OBS, ffmpeg and GStreamer use 4096-byte chunks, three to five chunk streams,
// and commands of a few hundred bytes.
const (
	// MaxPeerChunkSize is the largest SetChunkSize accepted (SRS uses the same cap).
	MaxPeerChunkSize = 64 << 10
	// MaxChunkStreams is how many chunk stream IDs one connection may use.
	MaxChunkStreams = 10
	// MaxMessageSize is the largest audio or video message (one coded frame).
	MaxMessageSize = 8 << 20
	// MaxCommandSize is the largest AMF command or data message (connect, publish, onMetaData).
	MaxCommandSize = 64 << 10
	// PrePublishBudget bounds the bytes go-rtmp holds across chunk streams
	// before a publish succeeds: enough for the commands and whatever an
	// eager client sends right behind its publish.
	PrePublishBudget = 256 << 10
	// PublishBudget bounds the bytes go-rtmp holds across chunk streams while publishing.
	PublishBudget = 2 * MaxMessageSize
	// MinAckWindow is the smallest window acknowledgement size accepted: go-rtmp
	// acknowledges every half window, so a tiny window makes it write for every chunk.
	MinAckWindow = 4096

	maxControlSize = 128        // protocol control messages are 4 to 10 bytes
	handshakeSize  = 1 + 2*1536 // C0, C1, C2: read by go-rtmp straight from the conn
)

// RTMP message type IDs the guard looks into.
const (
	msgSetChunkSize = 1
	msgWinAckSize   = 5
	msgAudio        = 8
	msgVideo        = 9
	msgDataAMF0     = 18
	msgCommandAMF0  = 20
)

// Violation reasons (metric labels).
const (
	violChunkSize    = "chunk_size"
	violChunkStreams = "chunk_streams"
	violChunkHeader  = "chunk_header"
	violMessageSize  = "message_size"
	violBudget       = "buffer_budget"
	violAMF          = "amf"
	violAckWindow    = "ack_window"
)

// violation is a refused chunk stream: a metric label and a sentence for the log.
type violation struct {
	reason string
	detail string
}

func (v *violation) Error() string { return "rtmp protocol violation: " + v.detail }

func violationf(reason, format string, a ...any) *violation {
	return &violation{reason: reason, detail: fmt.Sprintf(format, a...)}
}

type guardState uint8

const (
	gsBasic   guardState = iota // reading a chunk basic header
	gsHeader                    // reading a chunk message header (and extended timestamp)
	gsExtTS                     // a type-3 chunk may start with an extended timestamp
	gsPayload                   // passing chunk payload
)

// guardStream mirrors what go-rtmp keeps for one chunk stream.
type guardStream struct {
	id     uint32
	length uint32 // current message length
	typ    byte   // current message type
	got    uint32 // bytes of the current message received so far
	peak   uint32 // most bytes go-rtmp has held for this chunk stream (its buffer keeps its size)
	ext    bool   // the last type 0-2 header carried an extended timestamp
	extTS  uint32 // and this was its value
	body   []byte // the current message, when it is one the guard reads
	keep   bool   // the current message is copied into body
}

// chunkGuard follows the chunk stream between the handshake and go-rtmp.
// It is used by the connection's read goroutine only.
type chunkGuard struct {
	handshake int    // handshake bytes still to pass untouched
	chunkSize uint32 // the peer's chunk size, as go-rtmp knows it
	published bool   // a publish succeeded: the message-size limit applies, not the small budget
	held      int    // sum of peak over chunk streams
	streams   []*guardStream

	st    guardState
	hdr   [18]byte
	hn    int // header bytes read
	hneed int // header bytes needed so far
	fmt   byte
	cur   *guardStream
	left  uint32 // payload bytes left in the current chunk

	hold []byte // bytes kept back for the next read (an undecided extended timestamp)
}

func newChunkGuard() *chunkGuard {
	return &chunkGuard{handshake: handshakeSize, chunkSize: 128, hneed: 1}
}

// budget is how many bytes go-rtmp may hold across chunk streams now.
func (g *chunkGuard) budget() int {
	if g.published {
		return PublishBudget
	}
	return PrePublishBudget
}

// pending returns the bytes kept back from the previous filter call; they go
// in front of the next read.
func (g *chunkGuard) pending() []byte {
	h := g.hold
	g.hold = g.hold[:0]
	return h
}

// filter checks p, which holds the next bytes of the connection, and rewrites it
// in place into what go-rtmp may read: it returns how many bytes of p to pass
// on. Extended timestamps on type-3 chunks are removed; the last bytes may be
// kept back (see pending) until the next read decides them. On a violation
// nothing of p may be passed on.
func (g *chunkGuard) filter(p []byte) (int, error) {
	i, w := 0, 0
	if g.handshake > 0 {
		k := min(g.handshake, len(p))
		g.handshake -= k
		i, w = k, k
	}
	for i < len(p) {
		switch g.st {
		case gsBasic, gsHeader:
			b := p[i]
			p[w] = b
			i++
			w++
			g.hdr[g.hn] = b
			g.hn++
			if g.hn == g.hneed {
				if err := g.headerByte(); err != nil {
					return 0, err
				}
			}
		case gsExtTS:
			if len(p)-i < 4 {
				g.hold = append(g.hold[:0], p[i:]...)
				return w, nil
			}
			if binary.BigEndian.Uint32(p[i:]) == g.cur.extTS {
				i += 4 // go-rtmp does not expect it: drop it
			}
			if err := g.startPayload(); err != nil {
				return 0, err
			}
		case gsPayload:
			k := min(int(g.left), len(p)-i)
			if err := g.payload(p[i : i+k]); err != nil {
				return 0, err
			}
			if w != i {
				copy(p[w:], p[i:i+k])
			}
			i += k
			w += k
		}
	}
	return w, nil
}

// headerByte advances the header parser once hneed bytes are in.
func (g *chunkGuard) headerByte() error {
	if g.st == gsBasic {
		if g.hn == 1 {
			g.fmt = g.hdr[0] >> 6
			switch g.hdr[0] & 0x3f {
			case 0:
				g.hneed = 2
				return nil
			case 1:
				// go-rtmp reads this form into the wrong bytes; no encoder needs 320+ chunk streams.
				return violationf(violChunkHeader, "3-byte chunk stream ID form")
			}
		}
		id := uint32(g.hdr[0] & 0x3f)
		if g.hn == 2 {
			id = uint32(g.hdr[1]) + 64
		}
		g.cur = g.stream(id)
		if g.cur == nil {
			return violationf(violChunkStreams, "more than %d chunk streams", MaxChunkStreams)
		}
		g.st = gsHeader
		g.hn, g.hneed = 0, [4]int{11, 7, 3, 0}[g.fmt]
		if g.hneed > 0 {
			return nil
		}
		return g.headerDone()
	}
	if g.hn == [4]int{11, 7, 3, 0}[g.fmt] && g.fmt < 3 && be24(g.hdr[:3]) == 0xffffff {
		g.hneed += 4 // extended timestamp
		return nil
	}
	return g.headerDone()
}

// headerDone applies a complete chunk header to its chunk stream, as go-rtmp does.
func (g *chunkGuard) headerDone() error {
	s := g.cur
	h := g.hdr[:g.hn]
	switch g.fmt {
	case 0, 1:
		s.length, s.typ = be24(h[3:6]), h[6]
	}
	if g.fmt < 3 {
		s.ext = be24(h[:3]) == 0xffffff
		if s.ext {
			base := [3]int{11, 7, 3}[g.fmt]
			s.extTS = binary.BigEndian.Uint32(h[base : base+4])
		}
	}
	g.hn, g.hneed = 0, 1
	// go-rtmp panics ("invalid state") when a chunk brings no new bytes.
	switch {
	case s.length == 0 && s.got == 0 && g.fmt >= 2:
		return violationf(violChunkHeader, "chunk continues a message never started on chunk stream %d", s.id)
	case s.length == 0:
		return violationf(violChunkHeader, "empty message on chunk stream %d", s.id)
	case s.length <= s.got:
		return violationf(violChunkHeader, "header shrinks a message in progress on chunk stream %d", s.id)
	}
	if limit := messageLimit(s.typ); s.length > limit {
		return violationf(violMessageSize, "message of type %d declares %d bytes (limit %d)", s.typ, s.length, limit)
	}
	if g.fmt == 3 && s.ext {
		g.st = gsExtTS
		return nil
	}
	return g.startPayload()
}

// messageLimit is the largest message of type typ the guard lets through.
func messageLimit(typ byte) uint32 {
	switch {
	case typ >= 1 && typ <= 6:
		return maxControlSize
	case typ == msgAudio, typ == msgVideo:
		return MaxMessageSize
	default:
		return MaxCommandSize
	}
}

func (g *chunkGuard) startPayload() error {
	s := g.cur
	g.left = min(s.length-s.got, g.chunkSize)
	g.st = gsPayload
	if s.got == 0 {
		s.keep = s.typ == msgSetChunkSize || s.typ == msgWinAckSize || s.typ == msgDataAMF0 || s.typ == msgCommandAMF0
		s.body = s.body[:0]
	}
	if g.left == 0 {
		return g.chunkDone()
	}
	return nil
}

// payload accounts for b, the next payload bytes of the current chunk.
func (g *chunkGuard) payload(b []byte) error {
	s := g.cur
	n := uint32(len(b))
	s.got += n
	g.left -= n
	if s.got > s.peak {
		g.held += int(s.got - s.peak)
		s.peak = s.got
		if g.held > g.budget() {
			state := "before publishing"
			if g.published {
				state = "while publishing"
			}
			return violationf(violBudget, "%d bytes buffered across chunk streams %s (limit %d)", g.held, state, g.budget())
		}
	}
	if s.keep {
		s.body = append(s.body, b...)
	}
	if g.left == 0 {
		return g.chunkDone()
	}
	return nil
}

// chunkDone ends a chunk; a complete message is checked as go-rtmp is about to decode it.
func (g *chunkGuard) chunkDone() error {
	g.st = gsBasic
	s := g.cur
	if s.got < s.length {
		return nil
	}
	s.got = 0
	if !s.keep {
		return nil
	}
	body := s.body
	if cap(s.body) > 4<<10 {
		s.body = nil // an outsized command: do not hold on to it
	}
	switch s.typ {
	case msgSetChunkSize:
		return g.setChunkSize(body)
	case msgWinAckSize:
		if len(body) >= 4 {
			if w := int32(binary.BigEndian.Uint32(body)); w < MinAckWindow {
				return violationf(violAckWindow, "window acknowledgement size %d (minimum %d)", w, MinAckWindow)
			}
		}
	case msgCommandAMF0:
		return checkAMFCommand(body)
	case msgDataAMF0:
		return checkAMFData(body)
	}
	return nil
}

func (g *chunkGuard) setChunkSize(b []byte) error {
	if len(b) < 4 {
		return violationf(violChunkSize, "SetChunkSize of %d bytes", len(b))
	}
	v := binary.BigEndian.Uint32(b)
	switch {
	case v == 0:
		return violationf(violChunkSize, "SetChunkSize 0")
	case v&0x80000000 != 0, v > MaxPeerChunkSize:
		return violationf(violChunkSize, "SetChunkSize %d (limit %d)", v, MaxPeerChunkSize)
	}
	g.chunkSize = v
	return nil
}

// stream returns the state of chunk stream id, creating it within the limit.
func (g *chunkGuard) stream(id uint32) *guardStream {
	for _, s := range g.streams {
		if s.id == id {
			return s
		}
	}
	if len(g.streams) >= MaxChunkStreams {
		return nil
	}
	s := &guardStream{id: id}
	g.streams = append(g.streams, s)
	return s
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
