// Package testcert makes throwaway TLS certificates for tests: a
// self-signed certificate and its key, generated with crypto/x509 and
// written as PEM files into a test's temporary directory. Nothing is
// committed; every run makes its own.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Spec describes a certificate. Zero values take the defaults given.
type Spec struct {
	Serial    int64     // default 1
	Name      string    // subject common name; default "onair test"
	Hosts     []string  // DNS names or IP addresses; default 127.0.0.1 and localhost
	NotBefore time.Time // default an hour ago
	NotAfter  time.Time // default a day from now
}

// PEM returns a self-signed certificate and its private key, PEM-encoded.
func PEM(t testing.TB, s Spec) (certPEM, keyPEM []byte) {
	t.Helper()
	if s.Serial == 0 {
		s.Serial = 1
	}
	if s.Name == "" {
		s.Name = "onair test"
	}
	if s.Hosts == nil {
		s.Hosts = []string{"127.0.0.1", "localhost"}
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = time.Now().Add(-time.Hour)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Now().Add(24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(s.Serial),
		Subject:               pkix.Name{CommonName: s.Name},
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range s.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// Write writes a certificate and key made by PEM to certPath and keyPath.
func Write(t testing.TB, certPath, keyPath string, s Spec) {
	t.Helper()
	c, k := PEM(t, s)
	for path, b := range map[string][]byte{certPath: c, keyPath: k} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Files writes a certificate and key made by PEM into a new temporary
// directory and returns their paths.
func Files(t testing.TB, s Spec) (certPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	Write(t, certPath, keyPath, s)
	return certPath, keyPath
}
