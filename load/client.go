package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"
)

// Status is an RTMP onStatus (or _error) answer from the server.
type Status struct {
	Level       string `json:"level,omitempty"`
	Code        string `json:"code"`
	Description string `json:"description,omitempty"`
}

func (s Status) String() string {
	if s.Description == "" {
		return s.Code
	}
	return s.Code + " (" + s.Description + ")"
}

// codePublishStart is the status that confirms a publish.
const codePublishStart = "NetStream.Publish.Start"

// Target is where publishers connect: rtmp://HOST[:PORT]/APP.
type Target struct {
	Host  string // host:port
	App   string
	TCURL string
}

// ParseTarget parses an RTMP URL naming the application, without a stream name.
func ParseTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("RTMP URL %q: %w", raw, err)
	}
	if u.Scheme != "rtmp" {
		return Target{}, fmt.Errorf("RTMP URL %q: want rtmp://HOST[:PORT]/APP", raw)
	}
	app := strings.Trim(u.Path, "/")
	if u.Host == "" || app == "" || strings.Contains(app, "/") {
		return Target{}, fmt.Errorf("RTMP URL %q: want rtmp://HOST[:PORT]/APP (the stream names come from -key or -keys)", raw)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "1935")
	}
	return Target{Host: host, App: app, TCURL: "rtmp://" + u.Host + "/" + app}, nil
}

// refusedError is a publish the server answered with an error status.
type refusedError struct{ status Status }

func (e *refusedError) Error() string { return "refused: " + e.status.String() }

// session is an RTMP connection set up for publishing, before the
// scheduler takes over its writes.
type session struct {
	nc        net.Conn
	cr        *chunkReader
	chunkSize int
	streamID  uint32
	windowAck uint32 // server's acknowledgement window, 0 if none
	acked     uint64 // bytes read when we last acknowledged
	out       []byte // scratch for writes during setup
}

// handshakeSize is the size of C1/S1/C2/S2.
const handshakeSize = 1536

// dialPublish connects to t, publishes stream name and returns once the
// server confirmed with NetStream.Publish.Start. An error status is
// returned as a *refusedError. ctx bounds the whole exchange.
func dialPublish(ctx context.Context, t Target, name string, chunkSize int) (*session, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.Host)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	s := &session{nc: nc, cr: newChunkReader(nc), chunkSize: chunkSize}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	err = s.setup(t, name)
	stop()
	if err != nil {
		nc.Close()
		if isTimeout(err) {
			// The connection's deadline is the context's: report which one ended it.
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				return nil, context.DeadlineExceeded
			}
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return s, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *session) setup(t Target, name string) error {
	if err := s.handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	// Our chunk size first, then connect, in one write.
	size := binary.BigEndian.AppendUint32(nil, uint32(s.chunkSize))
	s.out = appendMessage(s.out[:0], csControl, msgSetChunkSize, 0, 0, size, 128)
	s.out = s.appendCommand(s.out, 0, "connect", 1, amfObj{
		{"app", t.App}, {"type", "nonprivate"}, {"flashVer", "FMLE/3.0 (compatible; onair-load)"}, {"tcUrl", t.TCURL},
	})
	if err := s.flush(); err != nil {
		return err
	}
	if _, err := s.await(1); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.out = s.appendCommand(s.out[:0], 0, "releaseStream", 2, nil, name)
	s.out = s.appendCommand(s.out, 0, "FCPublish", 3, nil, name)
	s.out = s.appendCommand(s.out, 0, "createStream", 4, nil)
	if err := s.flush(); err != nil {
		return err
	}
	res, err := s.await(4)
	if err != nil {
		return fmt.Errorf("createStream: %w", err)
	}
	var id float64
	ok := len(res) >= 4
	if ok {
		id, ok = res[3].(float64)
	}
	if !ok || id < 0 || id > 1<<31 {
		return fmt.Errorf("createStream: no stream ID in the answer %v", res)
	}
	s.streamID = uint32(id)
	s.out = s.appendCommand(s.out[:0], s.streamID, "publish", 5, nil, name, "live")
	if err := s.flush(); err != nil {
		return err
	}
	return s.awaitPublish()
}

func (s *session) handshake() error {
	c := make([]byte, 1+2*handshakeSize)
	c[0] = 3                                  // C0: RTMP version 3
	for i := 9; i < 1+handshakeSize; i += 8 { // C1: time 0, zero 0, random
		binary.LittleEndian.PutUint64(c[i:], rand.Uint64())
	}
	if _, err := s.nc.Write(c[:1+handshakeSize]); err != nil {
		return err
	}
	if _, err := io.ReadFull(s.nc, c); err != nil { // S0, S1, S2
		return err
	}
	if c[0] != 3 {
		return fmt.Errorf("server speaks RTMP version %d", c[0])
	}
	_, err := s.nc.Write(c[1 : 1+handshakeSize]) // C2 echoes S1
	return err
}

func (s *session) appendCommand(b []byte, msid uint32, name string, tid int, args ...any) []byte {
	p := appendAMF(nil, name)
	p = appendAMF(p, tid)
	for _, a := range args {
		p = appendAMF(p, a)
	}
	return appendMessage(b, csCommand, msgCommand, msid, 0, p, s.chunkSize)
}

func (s *session) flush() error {
	_, err := s.nc.Write(s.out)
	s.out = s.out[:0]
	return err
}

// await reads until the answer to transaction tid: its values for
// "_result", a *refusedError for "_error".
func (s *session) await(tid float64) ([]any, error) {
	for {
		vals, err := s.nextCommand()
		if err != nil {
			return nil, err
		}
		if len(vals) < 2 || vals[1] != tid {
			continue
		}
		switch vals[0] {
		case "_result":
			return vals, nil
		case "_error":
			return nil, &refusedError{statusOf(vals)}
		}
	}
}

// awaitPublish reads until the publish's onStatus.
func (s *session) awaitPublish() error {
	for {
		vals, err := s.nextCommand()
		if err != nil {
			return err
		}
		if len(vals) == 0 || vals[0] != "onStatus" {
			if len(vals) > 1 && vals[0] == "_error" && vals[1] == float64(5) {
				return &refusedError{statusOf(vals)}
			}
			continue
		}
		st := statusOf(vals)
		if st.Code == codePublishStart {
			return nil
		}
		if st.Level == "error" || strings.Contains(st.Code, "Fail") || strings.HasSuffix(st.Code, "BadName") {
			return &refusedError{st}
		}
	}
}

// statusOf finds the info object of an onStatus or _error command.
func statusOf(vals []any) Status {
	for i := len(vals) - 1; i >= 2; i-- {
		if m, ok := vals[i].(map[string]any); ok {
			str := func(k string) string { v, _ := m[k].(string); return v }
			return Status{Level: str("level"), Code: str("code"), Description: str("description")}
		}
	}
	return Status{Code: fmt.Sprint(vals[0])}
}

// nextCommand reads messages until a command, answering what the server
// needs answered on the way.
func (s *session) nextCommand() ([]any, error) {
	for {
		m, err := s.cr.next()
		if err != nil {
			return nil, err
		}
		if vals, ok := s.handle(m); ok {
			if err := s.flush(); err != nil {
				return nil, err
			}
			return vals, nil
		}
		if len(s.out) > 0 {
			if err := s.flush(); err != nil {
				return nil, err
			}
		}
	}
}

// handle processes one message from the server: control messages are
// answered into s.out, commands are decoded and returned.
func (s *session) handle(m message) ([]any, bool) {
	switch m.typ {
	case msgUserControl:
		if len(m.body) >= 6 && binary.BigEndian.Uint16(m.body) == ucPingRequest {
			resp := append([]byte{0, ucPingResponse}, m.body[2:6]...)
			s.out = appendMessage(s.out, csControl, msgUserControl, 0, 0, resp, s.chunkSize)
		}
	case msgWindowAckSize:
		if len(m.body) >= 4 {
			s.windowAck = binary.BigEndian.Uint32(m.body)
		}
	case msgCommand, msgCommandAMF3:
		body := m.body
		if m.typ == msgCommandAMF3 && len(body) > 0 {
			body = body[1:] // AMF3 commands start with a 0 byte, then AMF0 values
		}
		vals, _ := readAMFAll(body)
		if len(vals) > 0 {
			if _, ok := vals[0].(string); ok {
				return vals, true
			}
		}
	}
	if s.windowAck > 0 && s.cr.read-s.acked >= uint64(s.windowAck) {
		s.acked = s.cr.read
		s.out = appendMessage(s.out, csControl, msgAck, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(s.acked)), s.chunkSize)
	}
	return nil, false
}
