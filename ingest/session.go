package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	rtmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"
)

// RTMP onStatus codes used for refusals.
const (
	codeBadName      = "NetStream.Publish.BadName"
	codeUnauthorized = "NetStream.Publish.Unauthorized"
	codeFailed       = "NetStream.Publish.Failed"
)

// Bounds on what a publisher may send before its tracks are known.
const (
	startWaitMedia  = time.Second     // media span after which we start with what we have
	startWaitWall   = 2 * time.Second // wall time after the first media, likewise
	maxPendingUnits = 1024
	maxPendingBytes = 16 << 20
)

// refusal is a refused publish: an RTMP status for the client and a reason for logs and metrics.
type refusal struct {
	reason string // metric label
	code   string // RTMP status code
	desc   string // RTMP status description, shown by clients
	logErr error  // detail for the log only
	badKey bool   // the key itself was refused: counts towards the address's lockout
}

type sessionState int

const (
	stateConnected sessionState = iota // connected, not publishing
	stateDeciding                      // publishing, tracks not known yet
	stateLive                          // feeding a broadcast
	stateStopped                       // unpublished or refused
)

// session handles one RTMP connection: it authenticates the publish, parses tags,
// decides the track set and feeds the broadcast. All its methods except kick run
// on the connection's read goroutine.
type session struct {
	rtmp.DefaultHandler
	hub    *Hub
	c      *conn
	rc     *rtmp.Conn
	remote string

	app      string
	ch       *channel
	keyHash  string
	streamID uint32
	state    sessionState
	started  time.Time

	// Deciding the track set.
	meta         struct{ known, video, audio bool }
	vcfg         *VideoTrack
	acfg         *AudioTrack
	lengthSize   int
	pending      []pendingTag
	pendingBytes int
	firstMedia   time.Time

	// Live.
	lb     *liveBroadcast
	tracks Tracks
	tl     *timeline
	// resumed: this session continues a broadcast whose publisher returned,
	// and its first lead-track frame is still to be marked a discontinuity.
	resumed bool

	// Reading media messages.
	block []byte // the current payload block: full up to len

	badTagLogged bool
	kicked       atomic.Bool
}

type pendingTag struct {
	kind Kind
	raw  uint32
	recv time.Time
	v    VideoTag
	a    AudioTag
	size int
}

func newSession(h *Hub, c *conn) *session {
	return &session{hub: h, c: c, remote: c.nc.RemoteAddr().String(), lengthSize: 4}
}

func (s *session) logAttrs(args ...any) []any {
	base := []any{"remote", s.remote}
	if s.ch != nil {
		base = append(base, "channel", s.ch.name)
	}
	return append(base, args...)
}

// kick disconnects the publisher from another goroutine (takedown, takeover, shutdown).
func (s *session) kick(reason string) {
	s.kicked.Store(true)
	s.c.kill(reason)
}

// contain turns a panic in onair's handling of one message into an error that
// ends this connection only. go-rtmp recovers panics in its message loop too,
// but would only say so at debug level.
func (s *session) contain(what string, err *error) {
	if r := recover(); r != nil {
		s.hub.log.Error("rtmp handler panicked", s.logAttrs("in", what, "panic", r, "stack", string(debug.Stack()))...)
		s.c.setReason("internal error in " + what)
		*err = fmt.Errorf("%s panicked: %v", what, r)
	}
}

// OnServe is called when the RTMP handshake is done.
func (s *session) OnServe(c *rtmp.Conn) { s.rc = c }

// OnPlay refuses playback: viewers watch over HLS.
func (s *session) OnPlay(*rtmp.StreamContext, uint32, *message.NetStreamPlay) error {
	s.hub.stats.refuse("play")
	s.hub.refusals.warn("play", "rtmp play refused: onair serves viewers over HLS", s.logAttrs()...)
	return errors.New("playback is over HLS, not RTMP")
}

// OnConnect checks the application name.
func (s *session) OnConnect(_ uint32, cmd *message.NetConnectionConnect) (err error) {
	defer s.contain("connect", &err)
	app := cmd.Command.App
	if i := strings.IndexByte(app, '?'); i >= 0 {
		app = app[:i]
	}
	app = strings.Trim(app, "/")
	s.app = app
	if app != s.hub.opts.App {
		s.hub.stats.refuse("unknown_app")
		s.hub.refusals.warn("unknown_app", "rtmp connect refused: unknown app", s.logAttrs("app", app)...)
		s.sendConnectError(fmt.Sprintf("unknown application %q", app))
		return fmt.Errorf("unknown app %q", app)
	}
	return nil
}

// OnPublish authenticates the stream key and claims the channel.
func (s *session) OnPublish(sctx *rtmp.StreamContext, _ uint32, cmd *message.NetStreamPublish) (err error) {
	defer s.contain("publish", &err)
	if s.state != stateConnected {
		return errors.New("publish twice on one connection")
	}
	s.streamID = sctx.StreamID
	name := cmd.PublishingName
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	key, want := name, ""
	if s.hub.opts.AuthWebhook != "" || s.hub.channelForKey(key) == "" {
		// "channel/key" names the channel explicitly.
		if i := strings.IndexByte(name, '/'); i >= 0 {
			want, key = name[:i], name[i+1:]
		}
	}
	s.keyHash = keyHash(key)
	var ch *channel
	ref := s.hub.lockedOut(s.c.key)
	if ref == nil {
		ch, ref = s.hub.authorize(s.hub.ctx, s.app, want, key, s.remote)
		if ref != nil && ref.badKey {
			if lock := s.hub.backoff.failed(s.c.key, time.Now()); lock > 0 {
				ref.desc += fmt.Sprintf("; too many refused keys from this address: retry in %s", lock)
			}
		} else if ref == nil {
			s.hub.backoff.succeeded(s.c.key)
		}
	}
	if ref == nil {
		s.ch = ch
		s.hub.loadBan(s.hub.ctx, ch)
		// Here first (a ban, a local publisher), then across nodes: a publish
		// this node refuses must not hold the channel on the others.
		if ref = s.hub.claim(ch, s); ref == nil {
			if ref = s.hub.claimAcross(s.hub.ctx, ch); ref != nil {
				s.hub.unclaim(ch, s)
			}
		}
	}
	if ref != nil {
		s.hub.stats.refuse(ref.reason)
		attrs := s.logAttrs("reason", ref.reason, "key_hash", s.keyHash, "status", ref.code, "detail", ref.desc)
		if ref.logErr != nil {
			attrs = append(attrs, "err", ref.logErr)
		}
		s.hub.refusals.warn(ref.reason, "rtmp publish refused", attrs...)
		s.sendStatus(ref.code, "error", ref.desc)
		s.state = stateStopped
		s.c.setReason("publish refused: " + ref.reason)
		return errors.New(ref.desc)
	}
	s.state = stateDeciding
	s.started = time.Now()
	s.c.published()
	s.hub.stats.publishers.Add(1)
	s.hub.log.Info("publisher connected", s.logAttrs("key_hash", s.keyHash, "since_accept", s.started.Sub(s.c.accepted).Round(time.Millisecond))...)
	return nil
}

// OnSetDataFrame reads onMetaData's codec hints.
func (s *session) OnSetDataFrame(_ uint32, data *message.NetStreamSetDataFrame) (err error) {
	defer s.contain("onMetaData", &err)
	if s.state != stateDeciding {
		return nil
	}
	v, a, ok := parseMetadataHints(data.Payload)
	if ok {
		s.meta.known, s.meta.video, s.meta.audio = true, v, a
	}
	return nil
}

// OnFCUnpublish, OnDeleteStream and closeStream are a clean stop.
func (s *session) OnFCUnpublish(uint32, *message.NetStreamFCUnpublish) (err error) {
	defer s.contain("FCUnpublish", &err)
	s.stop("FCUnpublish")
	return nil
}

// OnDeleteStream ends the publish if it deletes the publishing stream.
func (s *session) OnDeleteStream(_ uint32, cmd *message.NetStreamDeleteStream) (err error) {
	defer s.contain("deleteStream", &err)
	if cmd.StreamID == s.streamID {
		s.stop("deleteStream")
	}
	return nil
}

// OnUnknownCommandMessage catches closeStream, which go-rtmp does not route.
func (s *session) OnUnknownCommandMessage(_ uint32, cmd *message.CommandMessage) (err error) {
	defer s.contain("command", &err)
	if cmd.CommandName == "closeStream" {
		s.stop("closeStream")
	}
	return nil
}

func (s *session) stop(how string) {
	if s.state != stateDeciding && s.state != stateLive {
		return
	}
	s.hub.log.Info("publisher stopped", s.logAttrs("by", how)...)
	s.finish(true)
	s.c.setIdle(idleBeforePublish)
}

// finish leaves the publishing state.
func (s *session) finish(clean bool) {
	s.hub.release(s.ch, s, clean)
	s.hub.stats.publishers.Add(-1)
	s.state = stateStopped
	s.lb, s.pending, s.pendingBytes = nil, nil, 0
}

// OnClose runs once when the connection ends, for whatever reason.
func (s *session) OnClose() {
	defer func() {
		// go-rtmp calls this outside its recovered loop: a panic here would end the process.
		if r := recover(); r != nil {
			s.hub.log.Error("rtmp close handler panicked", s.logAttrs("panic", r, "stack", string(debug.Stack()))...)
		}
	}()
	reason := s.c.why()
	if reason == "" {
		reason = "connection closed"
	}
	if s.state == stateDeciding || s.state == stateLive {
		s.hub.log.Info("publisher disconnected", s.logAttrs("reason", reason, "published", time.Since(s.started).Round(time.Millisecond))...)
		s.finish(false)
	} else {
		s.hub.log.Debug("rtmp connection closed", s.logAttrs("reason", reason)...)
	}
	// go-rtmp next waits up to 3 s for its queued writes, which never finish
	// once its write loop has failed (a peer that reset): release the socket
	// and the connection's place under the limits now. Our own last words
	// (refusal statuses) were written before.
	s.c.Close()
}

// OnVideo handles one video message.
func (s *session) OnVideo(ts uint32, payload io.Reader) (err error) {
	defer s.contain("video", &err)
	return s.onMedia(KindVideo, ts, payload)
}

// OnAudio handles one audio message.
func (s *session) OnAudio(ts uint32, payload io.Reader) (err error) {
	defer s.contain("audio", &err)
	return s.onMedia(KindAudio, ts, payload)
}

func (s *session) onMedia(kind Kind, ts uint32, payload io.Reader) error {
	if s.state != stateDeciding && s.state != stateLive {
		return nil // media after unpublish, or on a non-publishing stream
	}
	now := time.Now()
	b, err := s.readMessage(payload)
	if err != nil {
		return err
	}
	s.hub.stats.bytes.Add(uint64(len(b)))
	s.ch.meter.add(now, len(b))
	if len(b) == 0 {
		return nil
	}
	p := pendingTag{kind: kind, raw: ts, recv: now, size: len(b)}
	if kind == KindVideo {
		p.v, err = ParseVideoTag(b)
	} else {
		p.a, err = ParseAudioTag(b)
	}
	if err != nil {
		var uc *UnsupportedCodecError
		if errors.As(err, &uc) {
			s.hub.stats.refuse("unsupported_codec")
			s.hub.refusals.warn("unsupported_codec", "publisher disconnected: unsupported codec", s.logAttrs("codec", uc.Name, "kind", kindName(kind))...)
			s.c.setReason(uc.Error())
			return uc
		}
		s.hub.stats.badTags.Add(1)
		if !s.badTagLogged {
			s.badTagLogged = true
			s.hub.log.Warn("malformed tag dropped (further ones counted, not logged)", s.logAttrs("kind", kindName(kind), "err", err)...)
		}
		return nil
	}
	switch {
	case kind == KindVideo && p.v.Type == TagSequenceHeader:
		return s.onVideoConfig(p.v)
	case kind == KindAudio && p.a.Type == TagSequenceHeader:
		return s.onAudioConfig(p.a.Config)
	case kind == KindVideo && p.v.Type != TagFrame, kind == KindAudio && p.a.Type != TagFrame:
		return nil
	}
	if s.state == stateDeciding {
		return s.buffer(p)
	}
	s.forward(p)
	return nil
}

// readMessage returns a media message's bytes in a slice of their own (the
// access units made from it outlive go-rtmp's reused buffer). Messages are
// read straight into the session's payload block, one copy from go-rtmp's
// buffer and one allocation per block rather than per message; each message
// gets a slice whose capacity ends with it, so nothing appended to one can
// reach the next.
func (s *session) readMessage(payload io.Reader) ([]byte, error) {
	if cap(s.block)-len(s.block) < minBlockFree {
		s.block = make([]byte, 0, payloadBlockSize)
	}
	start := len(s.block)
	for {
		if len(s.block) == cap(s.block) {
			// The message outgrows the block: move what we have to a larger one.
			n := len(s.block) - start
			if n > MaxMessageSize {
				s.block = nil
				return nil, fmt.Errorf("media message over %d bytes", MaxMessageSize)
			}
			nb := make([]byte, n, max(payloadBlockSize, 2*n))
			copy(nb, s.block[start:])
			s.block, start = nb, 0
		}
		k, err := payload.Read(s.block[len(s.block):cap(s.block)])
		s.block = s.block[:len(s.block)+k]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read media message: %w", err)
		}
	}
	return s.block[start:len(s.block):len(s.block)], nil
}

// Media payloads are read into blocks of payloadBlockSize (about 170 ms of a
// 3 Mbit/s stream: small, since every publisher holds one); a block with less
// than minBlockFree left is replaced rather than split across, and a frame
// larger than what is left moves to a block of its own.
const (
	payloadBlockSize = 64 << 10
	minBlockFree     = 8 << 10
)

func kindName(k Kind) string {
	if k == KindAudio {
		return "audio"
	}
	return "video"
}

func (s *session) onVideoConfig(t VideoTag) error {
	if t.LengthSize != 0 {
		s.lengthSize = t.LengthSize
	}
	if s.state == stateLive {
		if s.tracks.Video != nil && sameVideo(s.tracks.Video, t.Config) {
			return nil // encoders repeat sequence headers
		}
		s.restart("video codec parameters changed")
	}
	s.vcfg = t.Config
	return s.maybeStart()
}

func (s *session) onAudioConfig(c *AudioTrack) error {
	if s.state == stateLive {
		if s.tracks.Audio != nil && s.tracks.Audio.Codec == c.Codec && bytes.Equal(s.tracks.Audio.Config, c.Config) {
			return nil
		}
		s.restart("audio codec parameters changed")
	}
	s.acfg = c
	return s.maybeStart()
}

func sameVideo(a, b *VideoTrack) bool {
	return Tracks{Video: a}.Equal(Tracks{Video: b})
}

// restart ends the current broadcast because the publisher changed codec
// parameters mid-stream, and goes back to deciding a new track set.
func (s *session) restart(why string) {
	s.hub.log.Info("codec parameters changed mid-stream: starting a new broadcast", s.logAttrs("why", why)...)
	s.hub.endFromSession(s.lb, EndNewTracks, why)
	s.meta.known, s.meta.video, s.meta.audio = true, s.tracks.Video != nil, s.tracks.Audio != nil
	s.vcfg, s.acfg = s.tracks.Video, s.tracks.Audio
	s.lb, s.tl, s.state = nil, nil, stateDeciding
	s.firstMedia = time.Time{}
}

func (s *session) buffer(p pendingTag) error {
	if s.firstMedia.IsZero() {
		s.firstMedia = p.recv
	}
	if len(s.pending) >= maxPendingUnits || s.pendingBytes+p.size > maxPendingBytes {
		if s.vcfg == nil && s.acfg == nil {
			// Media without any sequence header is undecodable: keep only the newest.
			s.hub.log.Warn("no sequence header yet: dropping buffered media", s.logAttrs("units", len(s.pending))...)
			s.pending, s.pendingBytes = nil, 0
		}
	}
	s.pending = append(s.pending, p)
	s.pendingBytes += p.size
	return s.maybeStart()
}

// maybeStart starts (or continues) the broadcast once the track set is known:
// every expected sequence header has arrived, or we have waited long enough.
func (s *session) maybeStart() error {
	if s.state != stateDeciding || (s.vcfg == nil && s.acfg == nil) {
		return nil
	}
	wantV, wantA := true, true
	if s.meta.known {
		wantV, wantA = s.meta.video, s.meta.audio
	}
	ready := (s.vcfg != nil || !wantV) && (s.acfg != nil || !wantA)
	if !ready && len(s.pending) > 0 {
		span := time.Duration(int32(s.pending[len(s.pending)-1].raw-s.pending[0].raw)) * time.Millisecond
		ready = span >= startWaitMedia || time.Since(s.firstMedia) >= startWaitWall ||
			len(s.pending) >= maxPendingUnits || s.pendingBytes >= maxPendingBytes
	}
	if !ready {
		return nil
	}
	tracks := Tracks{Video: s.vcfg, Audio: s.acfg}
	lb, base, resumed := s.hub.begin(s.ch, s, tracks)
	if lb == nil {
		return errors.New("channel no longer held by this publisher")
	}
	s.lb, s.tracks, s.state, s.resumed = lb, tracks, stateLive, resumed
	s.tl = newTimeline(base)
	// Anchor the timeline on the earliest usable buffered timestamp so that
	// nothing lands before base (audio often starts slightly before video).
	first := true
	var minRaw uint32
	for _, p := range s.pending {
		if s.usable(p) && (first || int32(p.raw-minRaw) < 0) {
			minRaw, first = p.raw, false
		}
	}
	if !first {
		s.tl.unwrap(minRaw)
	}
	pending := s.pending
	s.pending, s.pendingBytes = nil, 0
	for _, p := range pending {
		s.forward(p)
	}
	return nil
}

// usable reports whether p belongs to a track of the broadcast.
func (s *session) usable(p pendingTag) bool {
	if p.kind == KindVideo {
		return s.tracks.Video != nil && p.v.Codec == s.tracks.Video.Codec
	}
	return s.tracks.Audio != nil && p.a.Codec == s.tracks.Audio.Codec
}

// forward converts p to an access unit and queues it on every feed.
func (s *session) forward(p pendingTag) {
	lb := s.lb
	if lb == nil || lb.owner.Load() != s || !s.usable(p) {
		return
	}
	au := AccessUnit{Kind: p.kind, Received: p.recv}
	if p.kind == KindVideo {
		var err error
		if p.v.Codec == CodecAV1 {
			au.NALUs, err = SplitOBUs(p.v.Payload)
			au.Key = p.v.Key
		} else {
			au.NALUs, err = SplitNALUs(p.v.Payload, s.lengthSize)
			au.Key = IsKeyFrame(p.v.Codec, au.NALUs)
		}
		if err != nil || len(au.NALUs) == 0 {
			s.hub.stats.badTags.Add(1)
			if !s.badTagLogged {
				s.badTagLogged = true
				s.hub.log.Warn("malformed video frame dropped (further ones counted, not logged)", s.logAttrs("err", err)...)
			}
			return
		}
		au.DTS = s.tl.dts(KindVideo, p.raw)
		au.PTS = au.DTS + time.Duration(p.v.CTS)*time.Millisecond
	} else {
		au.Frame = p.a.Payload
		au.DTS = s.tl.dts(KindAudio, p.raw)
		au.PTS = au.DTS
	}
	if s.resumed && (p.kind == KindVideo || s.tracks.Video == nil) {
		au.Discontinuity, s.resumed = true, false
	}
	for _, f := range lb.feeds {
		f.Push(au)
	}
	lb.next.Store(int64(s.tl.next()))
}

// sendStatus writes an onStatus on the publishing stream before go-rtmp's own
// generic "Publish failed.", so clients show our code and description.
func (s *session) sendStatus(code, level, desc string) {
	body := &message.NetStreamOnStatus{InfoObject: message.NetStreamOnStatusInfoObject{
		Level: message.NetStreamOnStatusLevel(level), Code: message.NetStreamOnStatusCode(code), Description: desc,
	}}
	s.writeCommand(s.streamID, "onStatus", 0, body)
}

// sendConnectError answers connect with our own _error before go-rtmp's generic one.
func (s *session) sendConnectError(desc string) {
	body := &message.NetConnectionConnectResult{
		Properties: message.NetConnectionConnectResultProperties{FMSVer: "FMS/3,0,1,123", Capabilities: 31},
		Information: message.NetConnectionConnectResultInformation{
			Level: "error", Code: "NetConnection.Connect.Rejected", Description: desc,
		},
	}
	s.writeCommand(0, "_error", 1, body)
}

func (s *session) writeCommand(streamID uint32, name string, tid int64, body message.AMFConvertible) {
	if s.rc == nil {
		return
	}
	buf := new(bytes.Buffer)
	enc := message.NewAMFEncoder(buf, message.EncodingTypeAMF0)
	if err := message.EncodeBodyAnyValues(enc, body); err != nil {
		s.hub.log.Debug("encode rtmp status", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.rc.Write(ctx, statusChunkStreamID, 0, &rtmp.ChunkMessage{StreamID: streamID, Message: &message.CommandMessage{
		CommandName: name, TransactionID: tid, Encoding: message.EncodingTypeAMF0, Body: buf,
	}})
	if err == nil {
		// go-rtmp writes chunk streams round-robin: wait until ours is fully out,
		// or a long description would arrive after go-rtmp's own short status.
		_, err = s.rc.GetChunkStreamer().NewChunkWriter(ctx, statusChunkStreamID)
	}
	if err != nil {
		s.hub.log.Debug("write rtmp status", "err", err)
	}
}

// statusChunkStreamID is a chunk stream of our own for refusals; clients send
// commands on 3, 4 or 8 and go-rtmp answers on those. We write on it once per
// connection, right before the connection ends.
const statusChunkStreamID = 5
