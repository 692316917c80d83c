// Package localca is tlsd's built-in "internal" issuer: a local certificate authority
// created on first use in the state directory, issuing short-lived ECDSA P-256 leaf
// certificates for edge endpoints and renewing them before they expire, as Caddy's
// `tls internal` does. Clients trust it through the root printed by `tlsd ca`.
package localca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tlsd/tlsd/certs"
)

// Lifetimes. A leaf is renewed once two thirds of its life have passed.
const (
	RootLifetime = 10 * 365 * 24 * time.Hour
	LeafLifetime = 7 * 24 * time.Hour
)

// CA is the local certificate authority.
type CA struct {
	root    *x509.Certificate
	rootDER []byte
	key     crypto.Signer
	now     func() time.Time

	mu     sync.Mutex // guards leaves
	leaves map[string]*tls.Certificate
}

// RootFile and KeyFile name the CA's files inside the state directory.
func RootFile(stateDir string) string { return filepath.Join(stateDir, "ca", "root.crt") }
func KeyFile(stateDir string) string  { return filepath.Join(stateDir, "ca", "root.key") }

// Open loads the CA from stateDir, creating it (directory 0700, key 0600) on first use.
// now is the clock; nil means time.Now.
func Open(stateDir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if _, err := os.Stat(RootFile(stateDir)); errors.Is(err, fs.ErrNotExist) {
		return create(stateDir, now)
	}
	return load(stateDir, now)
}

func load(stateDir string, now func() time.Time) (*CA, error) {
	crtPEM, err := os.ReadFile(RootFile(stateDir))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(KeyFile(stateDir))
	if err != nil {
		return nil, fmt.Errorf("local CA: cannot read the key of %s: %v", RootFile(stateDir), err)
	}
	chain, err := certs.ParseCertificates(crtPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", RootFile(stateDir), err)
	}
	key, err := certs.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", KeyFile(stateDir), err)
	}
	if !certs.KeyMatches(chain[0], key) {
		return nil, fmt.Errorf("local CA: %s does not match %s", KeyFile(stateDir), RootFile(stateDir))
	}
	if now().After(chain[0].NotAfter) {
		return nil, fmt.Errorf("local CA: root %s expired on %s; move %s aside to create a new one",
			RootFile(stateDir), chain[0].NotAfter.Format(time.DateOnly), filepath.Dir(RootFile(stateDir)))
	}
	return &CA{root: chain[0], rootDER: chain[0].Raw, key: key, now: now, leaves: map[string]*tls.Certificate{}}, nil
}

func create(stateDir string, now func() time.Time) (*CA, error) {
	dir := filepath.Dir(RootFile(stateDir))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local CA: generate key: %w", err)
	}
	start := now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "tlsd local CA " + start.Format("2006-01-02"), Organization: []string{"tlsd local CA"}},
		NotBefore:             start,
		NotAfter:              start.Add(RootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("local CA: create root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	// The key first, exclusively: two processes racing to create the CA must not end
	// up with one's certificate and the other's key.
	if err := writeExclusive(KeyFile(stateDir), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process is creating the CA: give it a moment to write the root.
		time.Sleep(100 * time.Millisecond)
		if _, serr := os.Stat(RootFile(stateDir)); serr != nil {
			return nil, fmt.Errorf("local CA: %s exists without %s; remove it to create a new CA", KeyFile(stateDir), RootFile(stateDir))
		}
		return load(stateDir, now)
	}
	if err := os.WriteFile(RootFile(stateDir), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	return &CA{root: root, rootDER: der, key: key, now: now, leaves: map[string]*tls.Certificate{}}, nil
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("local CA: write %s: %w", path, err)
	}
	return f.Close()
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand failed: " + err.Error()) // the kernel's RNG does not fail
	}
	return n
}

// Root is the CA certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// RootPEM is the CA certificate as PEM, for clients to trust.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.rootDER})
}

// Certificate returns a valid leaf for domain ("*.example.com" gets a wildcard leaf),
// issuing a new one when there is none or the current one is two-thirds through its life.
func (ca *CA) Certificate(domain string) (*tls.Certificate, error) {
	domain = strings.ToLower(domain)
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if c := ca.leaves[domain]; c != nil {
		renewAt := c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) * 2 / 3)
		if now.Before(renewAt) {
			return c, nil
		}
	}
	c, err := ca.issueLocked(domain, now)
	if err != nil {
		return nil, err
	}
	ca.leaves[domain] = c
	return c, nil
}

func (ca *CA) issueLocked(domain string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local CA: generate key for %s: %w", domain, err)
	}
	start := now.Add(-5 * time.Minute) // tolerate clients whose clocks run a little behind
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    start,
		NotAfter:     minTime(start.Add(LeafLifetime), ca.root.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("local CA: issue for %s: %w", domain, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.rootDER}, PrivateKey: key, Leaf: leaf}, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
