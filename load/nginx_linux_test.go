package load

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPublishToNginxRTMP checks the client against a second, independent
// RTMP server: nginx-rtmp confirms the publishes, and ffprobe playing one
// stream back from it finds the clip's tracks and timestamps that keep
// rising across a loop.
func TestPublishToNginxRTMP(t *testing.T) {
	const module = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(nginx); err != nil {
		t.Skip("nginx not installed (apt-get install nginx-light libnginx-mod-rtmp)")
	}
	if _, err := os.Stat(module); err != nil {
		t.Skip("nginx's RTMP module not installed (apt-get install libnginx-mod-rtmp)")
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed")
	}
	media := clipMedia(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// One process (no master and workers), so that nothing outlives the
	// test binary even if it dies (Pdeathsig reaches only our child).
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:%d; application live { live on; record off; } } }
`, module, dir, dir, port)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx: %s%s", out.String(), log)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "nginx listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	target, _ := ParseTarget("rtmp://" + addr + "/live")
	run, err := StartPublish(context.Background(), PublishOptions{Target: target, Media: media,
		Streams: []Stream{{"s0", "s0"}, {"s1", "s1"}}, Duration: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both publishes confirmed", func() bool { return run.Progress().Live == 2 })
	// Play s1 back for 4 s: two loops of the 2 s clip.
	pctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	probe, err := exec.CommandContext(pctx, "ffprobe", "-v", "error", "-read_intervals", "%+4", "-select_streams", "v",
		"-show_entries", "stream=codec_name,width,height:packet=dts_time", "-of", "csv=p=0",
		"rtmp://"+addr+"/live/s1").CombinedOutput()
	res := run.Wait()
	if err != nil {
		t.Fatalf("ffprobe did not read 4 s of s1 within 20 s (timestamps not rising?): %v: %.2000s", err, probe)
	}
	if s := res.Summary(); s.Confirmed != 2 || s.Dropped+s.Failed+s.Refused != 0 {
		t.Fatalf("summary %+v, publishers %+v", s, res.Publishers)
	}
	lines := strings.Fields(string(probe))
	if len(lines) < 60 || !strings.Contains(string(probe), "h264,320,240") {
		t.Fatalf("ffprobe read %d lines, want a 320x240 H.264 stream and 4 s of packets:\n%s", len(lines), probe)
	}
	prev, first, last := -1.0, -1.0, 0.0
	for _, l := range lines {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil {
			continue // the stream line
		}
		if v <= prev {
			t.Fatalf("video DTS %v after %v: timestamps went back (loop seam?)", v, prev)
		}
		if first < 0 {
			first = v
		}
		prev, last = v, v
	}
	if last-first < 3 {
		t.Fatalf("ffprobe saw %.2f s of video, want over 3 s (more than one loop of the 2 s clip)", last-first)
	}
}
