package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/testcert"
)

// With rtmps-addr, the banner shows the rtmps:// server beside rtmp://; a
// certificate or key that is not a good pair stops start-up naming the setting.
func TestRTMPSStart(t *testing.T) {
	certPath, keyPath := testcert.Files(t, testcert.Spec{})
	otherCert, otherKey := testcert.Files(t, testcert.Spec{})
	stdout, stderr := serveUntilStarted(t, "--data-dir", t.TempDir(), "--rtmps-addr", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", keyPath)
	if !regexp.MustCompile(`Server:      rtmp://localhost:\d+/live\n    Server \(TLS\): rtmps://localhost:\d+/live\n`).MatchString(stdout) {
		t.Errorf("banner lacks the rtmps:// server:\n%s", stdout)
	}
	if !regexp.MustCompile(`onair started.* rtmp=(\S+) http=(\S+) .*rtmps=127\.0\.0\.1:\d+`).MatchString(stderr) {
		t.Errorf("start line lacks rtmps=:\n%s", stderr)
	}
	if !strings.Contains(stderr, "TLS certificate loaded for RTMPS") || !strings.Contains(stderr, "not_after=") {
		t.Errorf("the certificate is not logged at start:\n%s", stderr)
	}

	expired, expiredKey := testcert.Files(t, testcert.Spec{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"key of another certificate", certPath, otherKey, "invalid setting tls-key: key file " + otherKey},
		{"missing certificate", filepath.Join(t.TempDir(), "none.pem"), keyPath, "invalid setting tls-cert: cert file"},
		{"certificate as key", otherCert, otherCert, "invalid setting tls-key"},
		{"expired certificate", expired, expiredKey, "invalid setting tls-cert: cert file " + expired + ": certificate expired"},
	} {
		err := serve(context.Background(), []string{"--data-dir", t.TempDir(), "--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--rtmps-addr", "127.0.0.1:0", "--tls-cert", tc.cert, "--tls-key", tc.key}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: serve: %v; want an error with %q", tc.name, err, tc.want)
		}
	}
}

// ffmpeg publishes over rtmps:// with a test certificate and the channel
// goes live; plain RTMP on the RTMPS port is refused at once with a clear log
// line; replacing the certificate files while the stream goes on leaves it
// on (its TLS session is established) and new connections get the new
// certificate; an expired replacement is refused and the one in use stays.
func TestRTMPSPublishAndCertificateReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-protocols").Output(); err != nil || !strings.Contains(string(out), "rtmps") {
		t.Skip("no ffmpeg with rtmps")
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	firstEnd := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	testcert.Write(t, certPath, keyPath, testcert.Spec{Serial: 1, NotAfter: firstEnd})
	_, httpAddr, logs := startServeRTMP(t, "--data-dir", dir, "--channel", "main:main-key-123",
		"--rtmps-addr", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", keyPath)
	rtmpsAddr := regexp.MustCompile(`onair started.* rtmps=(\S+)`).FindStringSubmatch(logs.String())[1]

	ff := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
		"-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-f", "flv", "rtmps://"+rtmpsAddr+"/live/main-key-123")
	ffErr := &lockedBuffer{}
	ff.Stderr = ffErr
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	ffDone := make(chan error, 1)
	go func() { ffDone <- ff.Wait() }()
	t.Cleanup(func() {
		ff.Process.Kill()
		<-ffDone
	})
	state := func() string {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/channels/main")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v channelView
		json.NewDecoder(resp.Body).Decode(&v)
		return v.State
	}
	waitUntil(t, "main live over RTMPS", 15*time.Second, func() bool { return state() == "live" })
	playlist := playlistEnd(t, httpAddr, "main")
	waitUntil(t, "the playlist to advance", 10*time.Second, func() bool { return playlist() >= 3 })
	if m := regexp.MustCompile(`tls handshake done" .*took=(\S+) version="(TLS 1\.\d)"`).FindStringSubmatch(logs.String()); m != nil {
		t.Logf("ffmpeg's TLS handshake took %s (%s)", m[1], m[2])
	}

	// Plain RTMP on the RTMPS port.
	start := time.Now()
	plain := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
		"-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", "rtmp://"+rtmpsAddr+"/live/main-key-123")
	out, err := plain.CombinedOutput()
	if err == nil {
		t.Fatal("plain RTMP to the RTMPS port published")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("plain RTMP to the RTMPS port failed only after %v", took)
	}
	t.Logf("plain RTMP to the RTMPS port refused after %v; ffmpeg says: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	waitUntil(t, "the log line", 2*time.Second, func() bool {
		return strings.Contains(logs.String(), "TLS handshake failed: client sent plain RTMP to the RTMPS port")
	})

	serial := func() int64 {
		c, err := tls.Dial("tcp", rtmpsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 1 {
		t.Fatalf("serial %d at start", s)
	}
	// The expiry metric, for alerts on renewals that keep failing.
	expiry := func() time.Time {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^onair_ingest_tls_certificate_expiry_timestamp_seconds (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no certificate expiry in /metrics:\n%s", body)
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		return time.Unix(int64(v), 0)
	}
	if got := expiry(); !got.Equal(firstEnd) {
		t.Errorf("certificate expiry metric %s at start, want %s", got, firstEnd)
	}

	// A renewal: new files written beside, then renamed over the old ones.
	since := len(logs.String())
	before := playlist()
	renew := func(spec testcert.Spec) {
		testcert.Write(t, certPath+".new", keyPath+".new", spec)
		for _, p := range []string{keyPath, certPath} {
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	start = time.Now()
	secondEnd := firstEnd.Add(30 * 24 * time.Hour)
	renew(testcert.Spec{Serial: 2, NotAfter: secondEnd})
	waitUntil(t, "the new certificate", 6*time.Second, func() bool { return serial() == 2 })
	if got := expiry(); !got.Equal(secondEnd) {
		t.Errorf("certificate expiry metric %s after the renewal, want %s", got, secondEnd)
	}
	t.Logf("renewed certificate served %v after the files changed", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs.String()[since:], `msg="TLS certificate reloaded"`) {
		t.Error("the reload is not logged")
	}
	waitUntil(t, "the playlist to advance after the reload", 10*time.Second, func() bool { return playlist() >= before+2 })

	// An expired replacement is refused; the certificate in use stays.
	renew(testcert.Spec{Serial: 3, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	waitUntil(t, "the refusal", 6*time.Second, func() bool {
		return strings.Contains(logs.String()[since:], "TLS certificate not reloaded") && strings.Contains(logs.String()[since:], "certificate expired")
	})
	if s := serial(); s != 2 {
		t.Fatalf("serial %d after an expired replacement, want 2", s)
	}
	if got := expiry(); !got.Equal(secondEnd) {
		t.Errorf("certificate expiry metric %s after a refused replacement, want %s (the certificate in use)", got, secondEnd)
	}

	// SIGHUP rereads the files at once.
	renew(testcert.Spec{Serial: 4})
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "the reload on SIGHUP", 2*time.Second, func() bool {
		return strings.Contains(logs.String()[since:], "TLS certificate files reread on SIGHUP")
	})
	if s := serial(); s != 4 {
		t.Fatalf("serial %d after SIGHUP, want 4", s)
	}

	if tail := logs.String()[since:]; strings.Contains(tail, "broadcast ended") || strings.Contains(tail, "publisher disconnected") {
		t.Fatalf("the RTMPS stream was interrupted by the reload:\n%s", tail)
	}
	select {
	case err := <-ffDone:
		t.Fatalf("ffmpeg stopped: %v\n%s", err, ffErr.String())
	default:
	}
	if st := state(); st != "live" {
		t.Fatalf("main is %s after the reloads", st)
	}
}

// playlistEnd returns a function that reads the channel's media playlist and
// gives the sequence number after its last segment.
func playlistEnd(t *testing.T, httpAddr, channel string) func() int {
	get := func(path string) string {
		resp, err := http.Get("http://" + httpAddr + "/hls/" + channel + "/" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	return func() int {
		var media string
		for _, l := range strings.Split(get("index.m3u8"), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				media = strings.TrimSpace(l)
				break
			}
		}
		if media == "" {
			return 0
		}
		pl := get(media)
		m := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(pl)
		if m == nil {
			return 0
		}
		seq, _ := strconv.Atoi(m[1])
		return seq + strings.Count(pl, "#EXTINF")
	}
}
