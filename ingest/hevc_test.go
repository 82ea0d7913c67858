package ingest

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	rtmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"
)

// TestPublishHEVCEnhanced publishes libx265 output as Enhanced RTMP (FourCC hvc1)
// with go-rtmp's client: Debian's ffmpeg 5.1 cannot publish HEVC over RTMP (6.1+ can).
func TestPublishHEVCEnhanced(t *testing.T) {
	needTools(t, "ffmpeg")
	dir := t.TempDir()
	raw := filepath.Join(dir, "t.hevc")
	const frames = 30
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-frames:v", "30", "-c:v", "libx265", "-x265-params", "log-level=error:bframes=0:keyint=15", "-pix_fmt", "yuv420p", "-f", "hevc", raw).CombinedOutput()
	if err != nil {
		t.Skipf("libx265 not available: %v: %s", err, out)
	}
	data, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var vps, sps, pps []byte
	var aus [][][]byte // access units: NALUs, one picture each (x265 writes one slice per picture)
	var cur [][]byte
	for _, n := range splitAnnexB(data) {
		typ := (n[0] >> 1) & 0x3f
		switch typ {
		case 32:
			vps = n
		case 33:
			sps = n
		case 34:
			pps = n
		}
		cur = append(cur, n)
		if typ < 32 { // a VCL NALU ends the picture
			aus = append(aus, cur)
			cur = nil
		}
	}
	if len(aus) != frames || vps == nil {
		t.Fatalf("split %d pictures", len(aus))
	}

	// No grace: the test ends by dropping the connection (go-rtmp's client
	// DeleteStream races with its own message loop, as -race showed in CI).
	ts := startHub(t, func(o *Options) { o.Grace = -1 })
	lg := logrus.New()
	lg.Out = bytes.NewBuffer(nil)
	cc, err := rtmp.Dial("rtmp", ts.addr, &rtmp.ConnConfig{Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Connect(&message.NetConnectionConnect{Command: message.NetConnectionConnectCommand{App: "live"}}); err != nil {
		t.Fatal(err)
	}
	st, err := cc.CreateStream(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Publish(&message.NetStreamPublish{PublishingName: testKey, PublishingType: "live"}); err != nil {
		t.Fatal(err)
	}
	// Metadata says video only, so the broadcast starts on the sequence header.
	meta := []byte{0x02, 0, 10}
	meta = append(meta, "onMetaData"...)
	meta = append(meta, 0x08, 0, 0, 0, 1, 0, 12)
	meta = append(meta, "videocodecid"...)
	meta = append(meta, 0x00)
	meta = binary.BigEndian.AppendUint64(meta, math.Float64bits(float64(0x68766331))) // FourCC "hvc1" as an AMF number
	meta = append(meta, 0, 0, 9)
	if err := st.Write(4, 0, &message.DataMessage{Name: "@setDataFrame", Encoding: message.EncodingTypeAMF0, Body: bytes.NewReader(meta)}); err != nil {
		t.Fatal(err)
	}
	send := func(ts uint32, body []byte) {
		t.Helper()
		if err := st.Write(6, ts, &message.VideoMessage{Payload: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	send(0, exVideo(1, exSequenceStart, "hvc1", hevcConfig(vps, sps, pps)))
	for i, au := range aus {
		ft := byte(2)
		if IsKeyFrame(CodecHEVC, au) {
			ft = 1
		}
		// Alternate the two coded-frame packet types; with no B-frames CTS is 0 either way.
		if i%2 == 0 {
			send(uint32(i*33), exVideo(ft, exCodedFrames, "hvc1", append([]byte{0, 0, 0}, lengthPrefixed(au...)...)))
		} else {
			send(uint32(i*33), exVideo(ft, exCodedFramesX, "hvc1", lengthPrefixed(au...)))
		}
	}
	waitFor(t, "all frames", 5*time.Second, func() bool {
		b := ts.rec.broadcasts()
		return len(b) == 1 && len(ts.rec.unitsOf(b[0].ID, KindVideo)) == frames
	})
	b := ts.rec.broadcasts()[0]
	if v := b.Tracks.Video; v == nil || v.Codec != CodecHEVC || v.Width != 640 || v.Height != 360 || b.Tracks.Audio != nil {
		t.Fatalf("tracks %s", b.Tracks)
	}
	units := ts.rec.unitsOf(b.ID, KindVideo)
	for i, u := range units {
		if u.DTS != time.Duration(i*33)*time.Millisecond || u.PTS != u.DTS {
			t.Fatalf("unit %d dts %v pts %v", i, u.DTS, u.PTS)
		}
		if u.Key != (i%15 == 0) {
			t.Fatalf("unit %d key=%v", i, u.Key)
		}
	}
	cc.Close()
	waitEnded(t, ts, b.ID, 2*time.Second)
}

// splitAnnexB splits an Annex B byte stream into NALUs.
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+3 <= len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				out = append(out, bytes.TrimRight(b[start:i], "\x00"))
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}
