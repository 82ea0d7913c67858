package moderation

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/ingest"
)

// TestDecoderConfined: the ffmpeg a decoder runs sees no secret of onair's
// environment, works in /, runs under the address-space and CPU limits at a
// lower priority, and as nobody when onair is root.
func TestDecoderConfined(t *testing.T) {
	needFFmpeg(t)
	ffmpeg, _ := exec.LookPath("ffmpeg")
	t.Setenv("ONAIR_SECRET", "do-not-pass-this-on")
	d, err := StartDecoder(DecoderOptions{FFmpegPath: ffmpeg, Codec: ingest.CodecH264, Width: 320, Height: 240})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	proc := "/proc/" + strconv.Itoa(d.PID())
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile(proc + "/comm")
		if strings.TrimSpace(string(comm)) == "ffmpeg" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the decoder's process is %q, not ffmpeg, 5 s after start", comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	env, _ := os.ReadFile(proc + "/environ")
	if strings.Contains(string(env), "ONAIR_SECRET") || !strings.HasPrefix(string(env), "PATH=") {
		t.Errorf("ffmpeg's environment: %q, want PATH alone", env)
	}
	if cwd, _ := os.Readlink(proc + "/cwd"); cwd != "/" {
		t.Errorf("ffmpeg works in %q, want /", cwd)
	}
	limits, _ := os.ReadFile(proc + "/limits")
	for _, want := range []string{
		"Max address space         " + strconv.Itoa(decoderAddressSpaceKiB*1024),
		"Max cpu time              " + strconv.Itoa(decoderCPUSeconds),
	} {
		if !strings.Contains(string(limits), want) {
			t.Errorf("ffmpeg's limits lack %q:\n%s", want, limits)
		}
	}
	stat, _ := os.ReadFile(proc + "/stat")
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 17 || fields[16] != strconv.Itoa(decoderNice) { // field 19, nice
		t.Errorf("ffmpeg's nice value: %v, want %d", fields[16:17], decoderNice)
	}
	status, _ := os.ReadFile(proc + "/status")
	if os.Geteuid() == 0 && !strings.Contains(string(status), "\nUid:\t65534\t") {
		t.Errorf("onair runs as root, ffmpeg not as nobody:\n%s", status)
	}
}
