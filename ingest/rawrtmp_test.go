package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	amf0 "github.com/yutopp/go-amf0"
)

// rawClient speaks RTMP byte by byte, so tests can send what no encoder would.
type rawClient struct {
	t         testing.TB
	c         net.Conn
	chunkSize int
}

// dialRaw connects to addr (from local, if set) without a handshake.
func dialRaw(t testing.TB, addr, local string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, chunkSize: 128}
}

// handshakeBytes returns C0 and C1.
func handshakeC0C1() []byte {
	b := make([]byte, 1+1536)
	b[0] = 3
	for i := 9; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

// handshake does the plain RTMP handshake (C2 echoes S1).
func (r *rawClient) handshake() *rawClient {
	r.t.Helper()
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer r.c.SetDeadline(time.Time{})
	if _, err := r.c.Write(handshakeC0C1()); err != nil {
		r.t.Fatalf("write C0C1: %v", err)
	}
	s := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(r.c, s); err != nil {
		r.t.Fatalf("read S0S1S2: %v", err)
	}
	if _, err := r.c.Write(s[1 : 1+1536]); err != nil {
		r.t.Fatalf("write C2: %v", err)
	}
	return r
}

// write sends b and reports whether the server still took it.
func (r *rawClient) write(b []byte) error {
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(b)
	return err
}

// chunkHeader encodes a basic header and a message header of format f.
func chunkHeader(f byte, csid int, ts, length uint32, typ byte, msid uint32) []byte {
	var b []byte
	switch {
	case csid < 64:
		b = []byte{f<<6 | byte(csid)}
	case csid < 320:
		b = []byte{f << 6, byte(csid - 64)}
	default:
		b = []byte{f<<6 | 1, byte((csid - 64) % 256), byte((csid - 64) / 256)}
	}
	tsField := min(ts, 0xffffff)
	put24 := func(v uint32) { b = append(b, byte(v>>16), byte(v>>8), byte(v)) }
	if f <= 2 {
		put24(tsField)
	}
	if f <= 1 {
		put24(length)
		b = append(b, typ)
	}
	if f == 0 {
		b = binary.LittleEndian.AppendUint32(b, msid)
	}
	if f <= 2 && tsField == 0xffffff {
		b = binary.BigEndian.AppendUint32(b, ts)
	}
	return b
}

// messageBytes chunks one message at the client's chunk size: a type-0 chunk,
// then type-3 continuations (with the extended timestamp repeated, as ffmpeg
// does, when extInFmt3 is set).
func (r *rawClient) messageBytes(csid int, typ byte, msid, ts uint32, payload []byte, extInFmt3 bool) []byte {
	var b []byte
	b = append(b, chunkHeader(0, csid, ts, uint32(len(payload)), typ, msid)...)
	for off := 0; ; {
		n := min(r.chunkSize, len(payload)-off)
		b = append(b, payload[off:off+n]...)
		off += n
		if off >= len(payload) {
			break
		}
		b = append(b, chunkHeader(3, csid, 0, 0, 0, 0)...)
		if extInFmt3 && ts >= 0xffffff {
			b = binary.BigEndian.AppendUint32(b, ts)
		}
	}
	return b
}

func (r *rawClient) send(csid int, typ byte, msid, ts uint32, payload []byte) error {
	return r.write(r.messageBytes(csid, typ, msid, ts, payload, false))
}

func (r *rawClient) setChunkSize(n uint32) error {
	err := r.send(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, n))
	r.chunkSize = int(n)
	return err
}

// amf encodes values with go-amf0's encoder.
func amf(t testing.TB, vals ...any) []byte {
	var b bytes.Buffer
	e := amf0.NewEncoder(&b)
	for _, v := range vals {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func (r *rawClient) command(msid uint32, vals ...any) error {
	return r.send(3, msgCommandAMF0, msid, 0, amf(r.t, vals...))
}

// connectPublish sends connect, createStream and publish(key) without waiting for answers.
func (r *rawClient) connectPublish(app, key string) error {
	if err := r.command(0, "connect", 1.0, map[string]any{"app": app, "type": "nonprivate", "tcUrl": "rtmp://127.0.0.1/" + app}); err != nil {
		return err
	}
	if err := r.command(0, "createStream", 2.0, nil); err != nil {
		return err
	}
	return r.command(1, "publish", 3.0, nil, key, "live")
}

// closedWithin reports whether the server closes the connection within d,
// reading (and dropping) whatever it sends meanwhile.
func (r *rawClient) closedWithin(d time.Duration) bool {
	r.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, r.c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// readUntil reads what the server sends until it contains want or d passes.
func (r *rawClient) readUntil(want string, d time.Duration) bool {
	r.c.SetReadDeadline(time.Now().Add(d))
	defer r.c.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.c.Read(buf)
		got = append(got, buf[:n]...)
		if bytes.Contains(got, []byte(want)) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// flvTag is one audio, video or script tag of an FLV file.
type flvTag struct {
	typ  byte // 8 audio, 9 video, 18 script data
	ts   uint32
	data []byte
}

// key reports whether a video tag is a keyframe.
func (t flvTag) key() bool { return t.typ == msgVideo && len(t.data) > 0 && t.data[0]>>4 == 1 }

// config reports whether a tag is a sequence header.
func (t flvTag) config() bool {
	return (t.typ == msgVideo || t.typ == msgAudio) && len(t.data) > 1 && t.data[1] == 0
}

// readFLV reads every tag of an FLV file.
func readFLV(t testing.TB, path string) []flvTag {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 13 || string(b[:3]) != "FLV" {
		t.Fatalf("%s: not an FLV file", path)
	}
	var tags []flvTag
	for p := int(binary.BigEndian.Uint32(b[5:9])) + 4; p+11 <= len(b); {
		size := int(be24(b[p+1 : p+4]))
		ts := be24(b[p+4:p+7]) | uint32(b[p+7])<<24
		if p+11+size > len(b) {
			break
		}
		tags = append(tags, flvTag{typ: b[p], ts: ts, data: b[p+11 : p+11+size]})
		p += 11 + size + 4
	}
	return tags
}

// drain reads and drops what the server sends until the connection closes.
func (r *rawClient) drain() {
	go io.Copy(io.Discard, r.c)
}

// publishTag sends one FLV tag as an RTMP message on the publishing stream.
func (r *rawClient) publishTag(tag flvTag, ts uint32) error {
	switch tag.typ {
	case msgVideo:
		return r.write(r.messageBytes(6, msgVideo, 1, ts, tag.data, true))
	case msgAudio:
		return r.write(r.messageBytes(4, msgAudio, 1, ts, tag.data, true))
	case msgDataAMF0:
		return r.write(r.messageBytes(5, msgDataAMF0, 1, ts, append(amf(r.t, "@setDataFrame"), tag.data...), true))
	}
	return nil
}
