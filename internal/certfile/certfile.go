// Package certfile serves the current TLS certificate of a certificate file
// and a key file, as a renewal tool (certbot, cert-manager, acme.sh) leaves
// them: a Pair loads both at start, then Run re-reads them whenever either
// file changes (polling its modification time and size, so a renewal that
// swaps symlinks is seen too) and Reload re-reads them on demand (SIGHUP).
//
// A replacement is taken only when it is whole and good: both files parse,
// the key matches the certificate, and the certificate is valid now. Anything
// else (a half-written renewal, a key from another pair, an expired
// certificate) keeps the certificate in use and is logged once per change of
// the files. Connections already established are never touched: a new
// certificate is presented from the next TLS handshake on.
package certfile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often Run looks at the files.
const DefaultInterval = 2 * time.Second

// Error says which of the two files is at fault.
type Error struct {
	File string // "cert" or "key"
	Path string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s file %s: %v", e.File, e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Pair is a certificate file and its key file, loaded.
type Pair struct {
	certPath, keyPath string
	log               *slog.Logger
	now               func() time.Time // a seam for tests

	cur atomic.Pointer[tls.Certificate]

	mu     sync.Mutex // serializes loads
	seen   stamp      // the files as last loaded or refused; zero while unreadable
	warned time.Time  // when an expiry warning was logged last
}

// stamp identifies a version of the two files.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// Load reads the pair. It fails, naming the file at fault, when a file cannot
// be read, does not parse, the key does not match, or the certificate is not
// valid now. log receives reloads and refused replacements.
func Load(certPath, keyPath string, log *slog.Logger) (*Pair, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Pair{certPath: certPath, keyPath: keyPath, log: log, now: time.Now}
	st, _ := p.stat()
	c, err := p.read()
	if err != nil {
		return nil, err
	}
	p.cur.Store(c)
	p.seen = st
	p.warnExpiry()
	return p, nil
}

// Certificate returns the certificate in use.
func (p *Pair) Certificate() *tls.Certificate { return p.cur.Load() }

// GetCertificate is for tls.Config.GetCertificate: the certificate in use.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// Run looks at the files every interval (DefaultInterval if not positive)
// and reloads them when they changed, until ctx is done.
func (p *Pair) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.check(false)
			p.mu.Lock()
			p.warnExpiry()
			p.mu.Unlock()
		}
	}
}

// Reload re-reads the files now, changed or not (a SIGHUP). It reports
// whether a new certificate is in use; an error means the old one stays.
func (p *Pair) Reload() (bool, error) {
	return p.check(true)
}

// check reloads the files if they changed since last seen (or if force).
func (p *Pair) check(force bool) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.stat()
	if err == nil && st == p.seen && !force {
		return false, nil
	}
	if err != nil {
		// A file missing for a moment is what a renewal that replaces it
		// looks like: say so once, and look again at the next tick.
		if p.seen != (stamp{}) || force {
			p.log.Error("TLS certificate files unreadable; the certificate in use stays", "err", err)
		}
		p.seen = stamp{}
		return false, err
	}
	c, err := p.read()
	p.seen = st
	if err != nil {
		p.log.Error("TLS certificate not reloaded: the new files are refused; the certificate in use stays", "err", err)
		return false, err
	}
	old := p.cur.Swap(c)
	if old != nil && sameCert(old, c) {
		return false, nil
	}
	p.log.Info("TLS certificate reloaded", describe(c.Leaf)...)
	p.warned = time.Time{}
	p.warnExpiry()
	return true, nil
}

// warnExpiry logs, at most once a day, that the certificate in use expires
// soon: in less than a third of its lifetime or a week, whichever is less,
// when its renewal should long have replaced it.
func (p *Pair) warnExpiry() {
	leaf := p.cur.Load().Leaf
	now := p.now()
	left := leaf.NotAfter.Sub(now)
	if left > min(7*24*time.Hour, leaf.NotAfter.Sub(leaf.NotBefore)/3) || now.Sub(p.warned) < 24*time.Hour {
		return
	}
	p.warned = now
	p.log.Warn("TLS certificate expires soon and has not been renewed", append(describe(leaf), "left", left.Round(time.Minute).String())...)
}

func (p *Pair) stat() (stamp, error) {
	ci, err := os.Stat(p.certPath)
	if err != nil {
		return stamp{}, &Error{File: "cert", Path: p.certPath, Err: err}
	}
	ki, err := os.Stat(p.keyPath)
	if err != nil {
		return stamp{}, &Error{File: "key", Path: p.keyPath, Err: err}
	}
	return stamp{certMod: ci.ModTime(), keyMod: ki.ModTime(), certSize: ci.Size(), keySize: ki.Size()}, nil
}

// read loads and checks the pair.
func (p *Pair) read() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.certPath)
	if err != nil {
		return nil, &Error{File: "cert", Path: p.certPath, Err: err}
	}
	keyPEM, err := os.ReadFile(p.keyPath)
	if err != nil {
		return nil, &Error{File: "key", Path: p.keyPath, Err: err}
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return nil, &Error{File: "cert", Path: p.certPath, Err: err}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &Error{File: "key", Path: p.keyPath, Err: err}
	}
	c.Leaf = leaf
	now := p.now()
	switch {
	case now.After(leaf.NotAfter):
		return nil, &Error{File: "cert", Path: p.certPath, Err: fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))}
	case now.Before(leaf.NotBefore):
		return nil, &Error{File: "cert", Path: p.certPath, Err: fmt.Errorf("certificate not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	return &c, nil
}

// parseLeaf checks every certificate of the chain and returns the first.
func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	var leaf *x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if leaf == nil {
				return nil, fmt.Errorf("PEM block %q where a CERTIFICATE was expected", b.Type)
			}
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		if leaf == nil {
			leaf = c
		}
	}
	if leaf == nil {
		return nil, errors.New("no PEM certificate in the file")
	}
	return leaf, nil
}

func sameCert(a, b *tls.Certificate) bool {
	return len(a.Certificate) > 0 && len(b.Certificate) > 0 && string(a.Certificate[0]) == string(b.Certificate[0])
}

// describe gives a certificate's log attributes.
func describe(c *x509.Certificate) []any {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return []any{"subject", c.Subject.String(), "names", names, "serial", c.SerialNumber.String(),
		"not_after", c.NotAfter.UTC().Format(time.RFC3339)}
}

// Describe gives the log attributes of the certificate in use: subject,
// names, serial and expiry.
func (p *Pair) Describe() []any { return describe(p.cur.Load().Leaf) }
