package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestGStreamerPublish publishes with GStreamer's rtmp2sink (a second, independent
// RTMP client) and decodes the live HLS with ffprobe.
func TestGStreamerPublish(t *testing.T) {
	needTools(t, "gst-launch-1.0", "gst-inspect-1.0", "ffprobe")
	for _, el := range []string{"rtmp2sink", "x264enc", "voaacenc", "flvmux"} {
		if exec.Command("gst-inspect-1.0", el).Run() != nil {
			t.Skipf("GStreamer element %s is missing (scripts/test installs the plugins)", el)
		}
	}
	srv := StartServer(t)
	const frames = 300 // 10 s at 30 fps
	// x264enc with B-frames and a 1 s keyframe interval, as an OBS-like encoder would send.
	gst := exec.Command("gst-launch-1.0", "-q", "-e",
		"videotestsrc", "num-buffers=300", "pattern=smpte",
		"!", "video/x-raw,width=640,height=360,framerate=30/1",
		"!", "x264enc", "bframes=2", "key-int-max=30", "bitrate=1500", "speed-preset=veryfast",
		"!", "h264parse", "!", "queue", "!", "mux.",
		"audiotestsrc", "num-buffers=470", "!", "audio/x-raw,rate=48000,channels=2",
		"!", "voaacenc", "!", "aacparse", "!", "queue", "!", "mux.",
		"flvmux", "name=mux", "streamable=true",
		"!", "rtmp2sink", "location="+srv.RTMP+"/"+srv.Key)
	out := make(chan []byte, 1)
	go func() { b, _ := gst.CombinedOutput(); out <- b }()
	t.Cleanup(func() {
		if gst.Process != nil {
			gst.Process.Kill()
		}
	})

	playlist := srv.HTTP + "/hls/main/index.m3u8"
	WaitHTTP(t, playlist, 15*time.Second)
	video, audio := probeFrames(t, playlist, 60*time.Second)
	select {
	case b := <-out:
		// rtmp2sink's deleteStream at the very end is one go-rtmp v0.0.7 cannot decode, so
		// gst-launch may report "connection closed remotely" after its FCUnpublish was
		// honoured; what matters is that the broadcast ended cleanly and played whole.
		if !gst.ProcessState.Success() {
			t.Logf("gst-launch exited with %v:\n%s", gst.ProcessState, b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gst-launch did not finish")
	}
	if !strings.Contains(srv.Logs(), "by=FCUnpublish") {
		t.Error("the broadcast did not end with GStreamer's unpublish")
	}
	// Non-live test sources stamp frames exactly; rtmp2sink paces them in real time.
	span := checkContinuous(t, "video", video, 1.0/30)
	if len(video) != frames {
		t.Errorf("decoded %d of %d published frames", len(video), frames)
	}
	if len(audio) == 0 {
		t.Error("no audio decoded")
	}
	t.Logf("GStreamer publish: %d video frames over %.2f s, %d audio frames", len(video), span, len(audio))
}
