package segmenter

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

func newServer(t *testing.T, opts Options) (*Segmenter, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seg, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/hls/", seg.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); seg.Close() })
	return seg, srv
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, hdr...)
}

func do(t *testing.T, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// waitFor polls url until it answers 200.
func waitFor(t *testing.T, url string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, b := get(t, url)
		if resp.StatusCode == 200 {
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
	return nil
}

var uriRE = regexp.MustCompile(`URI="([^"]+)"|(?m)^([^#\s][^\s]*)$`)

func playlistURIs(pl []byte) []string {
	var out []string
	for _, m := range uriRE.FindAllSubmatch(pl, -1) {
		u := string(m[1]) + string(m[2])
		if u != "gap.mp4" {
			out = append(out, u)
		}
	}
	return out
}

type probeFrames struct {
	Streams []struct {
		CodecType    string `json:"codec_type"`
		NbReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
}

// probeCount has ffprobe decode every frame of url and returns the number of
// video and audio frames it decoded.
func probeCount(t *testing.T, url string) (video, audio int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=codec_type,nb_read_frames", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var p probeFrames
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Streams {
		n, _ := strconv.Atoi(s.NbReadFrames)
		switch s.CodecType {
		case "video":
			video += n
		case "audio":
			audio += n
		}
	}
	return video, audio
}

func TestVariantsDecode(t *testing.T) {
	kinds := []struct {
		name string
		k    clipKind
	}{{"av", clipAV}, {"video-only", clipVideo}, {"audio-only", clipAudio}}
	for _, variant := range []string{VariantLowLatency, VariantFMP4, VariantMPEGTS} {
		for _, kk := range kinds {
			t.Run(variant+"/"+kk.name, func(t *testing.T) {
				if testing.Short() && (variant != VariantLowLatency || kk.k != clipAV) {
					t.Skip("short")
				}
				c := makeClip(t, kk.k, 4)
				seg, srv := newServer(t, Options{Variant: variant, EndedLinger: time.Minute})
				done, _ := publish(t, seg, "ch", c, false)
				<-done
				pl := waitFor(t, srv.URL+"/hls/ch/index.m3u8")
				if !bytes.Contains(pl, []byte("#EXTM3U")) {
					t.Fatalf("bad multivariant playlist:\n%s", pl)
				}
				v, a := probeCount(t, srv.URL+"/hls/ch/index.m3u8")
				if v != c.videoFrames {
					t.Errorf("decoded %d video frames, published %d", v, c.videoFrames)
				}
				// The AAC decoder may not emit the last frame of a stream.
				if a < c.audioFrames-1 || a > c.audioFrames {
					t.Errorf("decoded %d audio frames, published %d", a, c.audioFrames)
				}
				if m := metricValue(t, seg, "onair_hls_dts_mismatch_total"); m != 0 {
					t.Errorf("%v frames with DTS disagreement", m)
				}
			})
		}
	}
}

func metricValue(t *testing.T, seg *Segmenter, name string) float64 {
	t.Helper()
	var b bytes.Buffer
	if err := seg.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("metric %s missing", name)
	return 0
}

type probePackets struct {
	Packets []struct {
		PTS string `json:"pts_time"`
		DTS string `json:"dts_time"`
	} `json:"packets"`
}

func packetTimes(t *testing.T, url string) (pts, dts []time.Duration) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
		"packet=pts_time,dts_time", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var p probePackets
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	sec := func(s string) time.Duration {
		f, _ := strconv.ParseFloat(s, 64)
		return time.Duration(math.Round(f*1e6)) * time.Microsecond
	}
	for _, pk := range p.Packets {
		pts = append(pts, sec(pk.PTS))
		dts = append(dts, sec(pk.DTS))
	}
	return pts, dts
}

// TestDTSAgreement proves on a libx264 B-frame stream that the DTS gohlslib
// derives from the bitstream agrees with RTMP's: what a player reads back
// from the HLS has every PTS exact and every DTS within RTMP's 1 ms rounding
// after the extractor's warm-up.
func TestDTSAgreement(t *testing.T) {
	c := makeClip(t, clipAV, 4)
	var srcPTS, srcDTS []time.Duration
	reordered := false
	for _, au := range c.aus {
		if au.NALUs != nil {
			srcPTS, srcDTS = append(srcPTS, au.PTS), append(srcDTS, au.DTS)
			reordered = reordered || au.PTS < srcPTS[max(0, len(srcPTS)-2)]
		}
	}
	if !reordered {
		t.Fatal("test clip has no B-frames")
	}
	for _, variant := range []string{VariantLowLatency, VariantMPEGTS} {
		t.Run(variant, func(t *testing.T) {
			seg, srv := newServer(t, Options{Variant: variant, EndedLinger: time.Minute})
			done, _ := publish(t, seg, "ch", c, false)
			<-done
			name := "video1_stream.m3u8"
			if variant == VariantMPEGTS {
				name = "main_stream.m3u8"
			}
			pts, dts := packetTimes(t, srv.URL+"/hls/ch/"+name)
			if len(pts) != len(srcPTS) {
				t.Fatalf("read %d packets, published %d", len(pts), len(srcPTS))
			}
			off := pts[0] - srcPTS[0]
			for i := range pts {
				if d := pts[i] - off - srcPTS[i]; d < -time.Millisecond/10 || d > time.Millisecond/10 {
					t.Errorf("frame %d: PTS %v, published %v", i, pts[i]-off, srcPTS[i])
				}
				if i > dtsWarmup {
					if d := dts[i] - off - srcDTS[i]; d < -time.Millisecond || d > time.Millisecond {
						t.Errorf("frame %d: DTS %v, RTMP DTS %v", i, dts[i]-off, srcDTS[i])
					}
				}
				if dts[i] > pts[i] || (i > 0 && dts[i] < dts[i-1]) {
					t.Errorf("frame %d: DTS %v not monotonic or past PTS %v", i, dts[i], pts[i])
				}
			}
			if m := metricValue(t, seg, "onair_hls_dts_mismatch_total"); m != 0 {
				t.Errorf("%v frames with DTS disagreement", m)
			}
		})
	}
}

// TestUnmuxableStream feeds a frame whose timestamps go backwards: the muxer
// cannot take it, so the broadcast is reported and its playlist ended, not
// mangled.
func TestUnmuxableStream(t *testing.T) {
	c := makeClip(t, clipVideo, 4)
	bad := *c
	bad.aus = append([]ingest.AccessUnit(nil), c.aus[:60]...)
	back := c.aus[50]
	back.PTS, back.DTS = c.aus[50].PTS, c.aus[59].DTS // decoded after frame 59, shown before it
	back.PTS = 0
	bad.aus = append(bad.aus, back)
	bad.aus = append(bad.aus, c.aus[60:]...)
	failed := make(chan error, 1)
	seg, srv := newServer(t, Options{EndedLinger: time.Minute, OnFailure: func(_ *ingest.Broadcast, err error) { failed <- err }})
	done, _ := publish(t, seg, "ch", &bad, false)
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "DTS") {
			t.Errorf("failure reason %q does not name the DTS", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFailure not called")
	}
	<-done
	_, b := get(t, srv.URL+"/hls/ch/video1_stream.m3u8")
	if !bytes.HasSuffix(b, []byte("#EXT-X-ENDLIST\n")) {
		t.Errorf("playlist not ended:\n%s", b)
	}
	if m := metricValue(t, seg, "onair_hls_mux_failures_total"); m != 1 {
		t.Errorf("failures metric %v", m)
	}
}
