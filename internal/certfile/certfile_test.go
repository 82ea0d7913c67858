package certfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/testcert"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func serial(c *tls.Certificate) int64 { return c.Leaf.SerialNumber.Int64() }

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := func(t *testing.T) (string, string) { return testcert.Files(t, testcert.Spec{Serial: 7}) }
	other := func(t *testing.T) (string, string) {
		c, _ := testcert.Files(t, testcert.Spec{})
		_, k := testcert.Files(t, testcert.Spec{})
		return c, k
	}
	tests := []struct {
		name     string
		files    func(*testing.T) (string, string)
		wantFile string // the file the error names; "" for success
		wantErr  string
	}{
		{"valid pair", good, "", ""},
		{"missing cert", func(t *testing.T) (string, string) { _, k := good(t); return filepath.Join(dir, "nope.pem"), k }, "cert", "no such file"},
		{"missing key", func(t *testing.T) (string, string) { c, _ := good(t); return c, filepath.Join(dir, "nope.pem") }, "key", "no such file"},
		{"key of another certificate", other, "key", "does not match"},
		{"key and certificate swapped", func(t *testing.T) (string, string) { c, k := good(t); return k, c }, "cert", "PRIVATE KEY"},
		{"expired", func(t *testing.T) (string, string) {
			return testcert.Files(t, testcert.Spec{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		}, "cert", "expired"},
		{"not yet valid", func(t *testing.T) (string, string) {
			return testcert.Files(t, testcert.Spec{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
		}, "cert", "not valid before"},
		{"empty cert", func(t *testing.T) (string, string) {
			c, k := good(t)
			os.WriteFile(c, nil, 0o600)
			return c, k
		}, "cert", "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, k := tc.files(t)
			p, err := Load(c, k, slog.New(slog.DiscardHandler))
			if tc.wantFile == "" {
				if err != nil {
					t.Fatal(err)
				}
				if serial(p.Certificate()) != 7 {
					t.Fatalf("serial %d", serial(p.Certificate()))
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.File != tc.wantFile || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v; want one naming the %s file and saying %q", err, tc.wantFile, tc.wantErr)
			}
		})
	}
}

// Replacements are taken when whole and good; anything else keeps the
// certificate in use, with one log line per change of the files.
func TestReplacements(t *testing.T) {
	certPath, keyPath := testcert.Files(t, testcert.Spec{Serial: 1})
	logs := &logBuf{}
	p, err := Load(certPath, keyPath, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		replace    func()
		wantSerial int64
		wantLog    string
	}{
		{"unchanged files", func() {}, 1, ""},
		{"a new pair", func() { testcert.Write(t, certPath, keyPath, testcert.Spec{Serial: 2}) }, 2, "TLS certificate reloaded"},
		{"half-written: the new certificate without its key", func() {
			c, _ := testcert.PEM(t, testcert.Spec{Serial: 3})
			os.WriteFile(certPath, c, 0o600)
		}, 2, "does not match"},
		{"the same half-written files again", func() {}, 2, ""},
		{"garbage", func() { os.WriteFile(certPath, []byte("-----BEGIN CERT"), 0o600) }, 2, "no PEM certificate"},
		{"truncated key", func() {
			testcert.Write(t, certPath, keyPath, testcert.Spec{Serial: 4})
			k, _ := os.ReadFile(keyPath)
			os.WriteFile(keyPath, k[:len(k)/2], 0o600)
		}, 2, "key file"},
		{"expired", func() {
			testcert.Write(t, certPath, keyPath, testcert.Spec{Serial: 5, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		}, 2, "expired"},
		{"files removed", func() { os.Remove(certPath) }, 2, "unreadable"},
		{"still removed", func() {}, 2, ""},
		{"a good pair again", func() { testcert.Write(t, certPath, keyPath, testcert.Spec{Serial: 6}) }, 6, "serial=6"},
	}
	for _, st := range steps {
		before := len(logs.String())
		st.replace()
		p.check(false)
		got := logs.String()[before:]
		if s := serial(p.Certificate()); s != st.wantSerial {
			t.Fatalf("%s: serial %d, want %d\n%s", st.name, s, st.wantSerial, got)
		}
		if st.wantLog == "" && got != "" || !strings.Contains(got, st.wantLog) || strings.Count(got, "\n") > 1 {
			t.Fatalf("%s: logged %q, want one line with %q", st.name, got, st.wantLog)
		}
		cert, _ := p.GetCertificate(nil)
		if serial(cert) != st.wantSerial {
			t.Fatalf("%s: GetCertificate gives serial %d", st.name, serial(cert))
		}
	}
	// Reload reads the files even when unchanged; the same certificate is no change.
	if changed, err := p.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files: %v %v", changed, err)
	}
}

// Run picks a renewal up within its interval.
func TestRunPicksUpRenewal(t *testing.T) {
	// A renewal as certbot does it: new files, then the symlinks swapped.
	dir := t.TempDir()
	link := func(name, target string) {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c1, k1 := testcert.Files(t, testcert.Spec{Serial: 1})
	link("cert.pem", c1)
	link("key.pem", k1)
	p, err := Load(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx, 100*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	c2, k2 := testcert.Files(t, testcert.Spec{Serial: 2})
	start := time.Now()
	link("cert.pem", c2)
	link("key.pem", k2)
	for serial(p.Certificate()) != 2 {
		if time.Since(start) > 2*time.Second {
			t.Fatal("renewal not picked up in 2 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("renewal picked up in %v (interval 100ms)", time.Since(start).Round(time.Millisecond))
}

// A certificate near its end is warned about at load and once a day after.
func TestExpiryWarning(t *testing.T) {
	certPath, keyPath := testcert.Files(t, testcert.Spec{NotBefore: time.Now().Add(-80 * 24 * time.Hour), NotAfter: time.Now().Add(3 * 24 * time.Hour)})
	logs := &logBuf{}
	p, err := Load(certPath, keyPath, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(logs.String(), "expires soon") != 1 || !strings.Contains(logs.String(), "left=72h0m0s") && !strings.Contains(logs.String(), "left=71h59m0s") {
		t.Fatalf("log: %s", logs.String())
	}
	p.warnExpiry()
	if n := strings.Count(logs.String(), "expires soon"); n != 1 {
		t.Fatalf("warned %d times within a day", n)
	}
	p.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	p.warnExpiry()
	if n := strings.Count(logs.String(), "expires soon"); n != 2 {
		t.Fatalf("warned %d times after a day", n)
	}

	// A fresh certificate, even a short-lived one, is no warning.
	logs = &logBuf{}
	c, k := testcert.Files(t, testcert.Spec{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(6 * 24 * time.Hour)})
	if _, err := Load(c, k, slog.New(slog.NewTextHandler(logs, nil))); err != nil || logs.String() != "" {
		t.Fatalf("err %v, log %q", err, logs.String())
	}
}
