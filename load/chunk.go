package load

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Chunk stream IDs the publisher writes on (as ffmpeg and OBS do).
const (
	csControl = 2 // protocol control and user control messages
	csCommand = 3 // connect, createStream, publish
	csAudio   = 4
	csData    = 5 // @setDataFrame
	csVideo   = 6
)

// RTMP message type IDs.
const (
	msgSetChunkSize  = 1
	msgAbort         = 2
	msgAck           = 3
	msgUserControl   = 4
	msgWindowAckSize = 5
	msgPeerBandwidth = 6
	msgAudio         = 8
	msgVideo         = 9
	msgDataAMF3      = 15
	msgCommandAMF3   = 17
	msgData          = 18
	msgCommand       = 20
)

// User control events.
const (
	ucPingRequest  = 6
	ucPingResponse = 7
)

// extendedTS is the timestamp field value that says "see the extended field".
const extendedTS = 0xffffff

// type0HeaderLen is a type-0 chunk header with a one-byte basic header and
// no extended timestamp.
const type0HeaderLen = 12

// appendType0 appends a type-0 chunk header (whole message header) for a
// chunk stream ID below 64.
func appendType0(b []byte, csid byte, ts uint32, length int, typ byte, msid uint32) []byte {
	field := ts
	if ts >= extendedTS {
		field = extendedTS
	}
	b = append(b, csid, byte(field>>16), byte(field>>8), byte(field),
		byte(length>>16), byte(length>>8), byte(length), typ)
	b = binary.LittleEndian.AppendUint32(b, msid)
	if ts >= extendedTS {
		b = binary.BigEndian.AppendUint32(b, ts)
	}
	return b
}

// appendMessage appends a whole message, split into chunks of chunkSize
// bytes: a type-0 header, then type-3 headers (repeating the extended
// timestamp when there is one, as FMS, ffmpeg and nginx-rtmp expect).
func appendMessage(b []byte, csid byte, typ byte, msid, ts uint32, payload []byte, chunkSize int) []byte {
	b = appendType0(b, csid, ts, len(payload), typ, msid)
	for i := 0; ; {
		n := min(chunkSize, len(payload)-i)
		b = append(b, payload[i:i+n]...)
		i += n
		if i >= len(payload) {
			return b
		}
		b = append(b, 0xc0|csid)
		if ts >= extendedTS {
			b = binary.BigEndian.AppendUint32(b, ts)
		}
	}
}

// chunkBody returns a message's payload as it goes on the wire after its
// type-0 header: chunks of chunkSize bytes separated by one-byte type-3
// headers. It is valid for any timestamp below extendedTS, so it is
// prepared once per message and shared by every publisher and every loop.
func chunkBody(csid byte, payload []byte, chunkSize int) []byte {
	if len(payload) <= chunkSize {
		return payload
	}
	out := make([]byte, 0, len(payload)+len(payload)/chunkSize)
	for i := 0; i < len(payload); i += chunkSize {
		if i > 0 {
			out = append(out, 0xc0|csid)
		}
		out = append(out, payload[i:min(i+chunkSize, len(payload))]...)
	}
	return out
}

// message is one RTMP message read from the server.
type message struct {
	typ  byte
	msid uint32
	ts   uint32
	body []byte
}

// inStream is the reading state of one chunk stream.
type inStream struct {
	ts, delta uint32
	length    uint32
	typ       byte
	msid      uint32
	ext       bool
	buf       []byte
}

// chunkReader reassembles the messages a server sends.
type chunkReader struct {
	r         *bufio.Reader
	chunkSize uint32
	streams   map[uint32]*inStream
	read      uint64 // bytes read, for acknowledgements
}

// maxInMessage bounds a message from the server; commands and controls
// are small, and we do not play media.
const maxInMessage = 1 << 20

func newChunkReader(r io.Reader) *chunkReader {
	return &chunkReader{r: bufio.NewReaderSize(r, 4096), chunkSize: 128, streams: map[uint32]*inStream{}}
}

func (c *chunkReader) readFull(b []byte) error {
	n, err := io.ReadFull(c.r, b)
	c.read += uint64(n)
	return err
}

// next returns the next complete message. Protocol control messages that
// change the reader (SetChunkSize, Abort) are applied and returned too.
func (c *chunkReader) next() (message, error) {
	var h [11]byte
	for {
		if err := c.readFull(h[:1]); err != nil {
			return message{}, err
		}
		format := h[0] >> 6
		csid := uint32(h[0] & 0x3f)
		switch csid {
		case 0:
			if err := c.readFull(h[1:2]); err != nil {
				return message{}, err
			}
			csid = 64 + uint32(h[1])
		case 1:
			if err := c.readFull(h[1:3]); err != nil {
				return message{}, err
			}
			csid = 64 + uint32(h[1]) + uint32(h[2])<<8
		}
		st := c.streams[csid]
		if st == nil {
			if format != 0 {
				return message{}, fmt.Errorf("chunk stream %d starts with a type-%d header", csid, format)
			}
			if len(c.streams) >= 64 {
				return message{}, fmt.Errorf("server opened more than 64 chunk streams")
			}
			st = &inStream{}
			c.streams[csid] = st
		}
		fresh := len(st.buf) == 0 // this chunk starts a message
		sizes := [4]int{11, 7, 3, 0}
		if err := c.readFull(h[:sizes[format]]); err != nil {
			return message{}, err
		}
		if format <= 2 {
			field := uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
			st.ext = field == extendedTS
			if st.ext {
				var e [4]byte
				if err := c.readFull(e[:]); err != nil {
					return message{}, err
				}
				field = binary.BigEndian.Uint32(e[:])
			}
			if format == 0 {
				st.ts, st.delta = field, 0
			} else {
				st.delta = field
				st.ts += field
			}
			if format <= 1 {
				st.length = uint32(h[3])<<16 | uint32(h[4])<<8 | uint32(h[5])
				st.typ = h[6]
			}
			if format == 0 {
				st.msid = binary.LittleEndian.Uint32(h[7:11])
			}
		} else {
			if st.ext {
				var e [4]byte
				if err := c.readFull(e[:]); err != nil {
					return message{}, err
				}
			}
			if fresh {
				st.ts += st.delta
			}
		}
		if st.length > maxInMessage {
			return message{}, fmt.Errorf("server message of %d bytes (type %d) exceeds %d", st.length, st.typ, maxInMessage)
		}
		n := min(c.chunkSize, st.length-uint32(len(st.buf)))
		start := len(st.buf)
		st.buf = append(st.buf, make([]byte, n)...)
		if err := c.readFull(st.buf[start:]); err != nil {
			return message{}, err
		}
		if uint32(len(st.buf)) < st.length {
			continue
		}
		m := message{typ: st.typ, msid: st.msid, ts: st.ts, body: st.buf}
		st.buf = nil
		switch m.typ {
		case msgSetChunkSize:
			if len(m.body) < 4 {
				return message{}, fmt.Errorf("short SetChunkSize")
			}
			size := binary.BigEndian.Uint32(m.body) & 0x7fffffff
			if size < 1 || size > maxInMessage {
				return message{}, fmt.Errorf("server chunk size %d out of range", size)
			}
			c.chunkSize = size
		case msgAbort:
			if len(m.body) >= 4 {
				if s := c.streams[binary.BigEndian.Uint32(m.body)]; s != nil {
					s.buf = nil
				}
			}
		}
		return m, nil
	}
}
