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
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

	// Recovered, when not empty, says that Open found the remains of a creation that
	// never finished (a full disk, a crash) and set them aside to create this CA: the
	// caller should tell the operator, since clients must trust the new root.
	Recovered string

	mu     sync.Mutex // guards leaves
	leaves map[string]*tls.Certificate
}

// RootFile and KeyFile name the CA's files inside the state directory.
func RootFile(stateDir string) string { return filepath.Join(stateDir, "ca", "root.crt") }
func KeyFile(stateDir string) string  { return filepath.Join(stateDir, "ca", "root.key") }

// Open loads the CA from stateDir, creating it (directory 0700, key 0600) on first use.
// now is the clock; nil means time.Now. Creation is atomic: the CA appears whole or not at
// all, and what an unfinished creation left (empty files) is set aside, not trusted.
func Open(stateDir string, now func() time.Time) (*CA, error) {
	return OpenNamed(stateDir, DefaultName, now)
}

// DefaultName is the internal issuer's root name; the date of creation follows it.
const DefaultName = "tlsd local CA"

// OpenNamed is Open for a CA whose root is called name (the tunnel's CA is another CA
// than the endpoints' internal issuer, in a state directory of its own).
func OpenNamed(stateDir, name string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	switch incomplete, err := unfinished(stateDir); {
	case err != nil:
		return nil, err
	case incomplete:
		aside := filepath.Join(stateDir, fmt.Sprintf("ca.incomplete-%d", now().UnixNano()))
		if err := os.Rename(caDir(stateDir), aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("local CA: set aside the unfinished %s: %w", caDir(stateDir), err)
		}
		ca, err := create(stateDir, name, now)
		if ca != nil {
			ca.Recovered = fmt.Sprintf("%s held an unfinished CA (empty files): set aside as %s and created a new one; clients must trust the new root", caDir(stateDir), aside)
		}
		return ca, err
	}
	if _, err := os.Stat(RootFile(stateDir)); errors.Is(err, fs.ErrNotExist) {
		return create(stateDir, name, now)
	}
	return load(stateDir, now)
}

func caDir(stateDir string) string { return filepath.Dir(RootFile(stateDir)) }

// unfinished reports whether the CA directory exists but holds nothing usable: no root,
// and no file with content. (A root without its key, or a key without its root, is an
// operator's business, not ours: load says so.)
func unfinished(stateDir string) (bool, error) {
	entries, err := os.ReadDir(caDir(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("local CA: %w", err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || fi.Size() > 0 {
			return false, nil
		}
	}
	return len(entries) > 0, nil
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
	return fromPEM(crtPEM, keyPEM, RootFile(stateDir), KeyFile(stateDir), now)
}

// fromPEM is the CA of a root and its key; crtName and keyName say where they came from.
func fromPEM(crtPEM, keyPEM []byte, crtName, keyName string, now func() time.Time) (*CA, error) {
	chain, err := certs.ParseCertificates(crtPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", crtName, err)
	}
	key, err := certs.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA: %s: %w", keyName, err)
	}
	if !certs.KeyMatches(chain[0], key) {
		return nil, fmt.Errorf("local CA: %s does not match %s", keyName, crtName)
	}
	if now().After(chain[0].NotAfter) {
		return nil, fmt.Errorf("local CA: root %s expired on %s; move it aside to create a new one",
			crtName, chain[0].NotAfter.Format(time.DateOnly))
	}
	return &CA{root: chain[0], rootDER: chain[0].Raw, key: key, now: now, leaves: map[string]*tls.Certificate{}}, nil
}

func create(stateDir, name string, now func() time.Time) (*CA, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	ca, keyPEM, rootPEM, err := newRoot(name, now)
	if err != nil {
		return nil, err
	}
	switch err := publish(stateDir, keyPEM, rootPEM); {
	case errors.Is(err, fs.ErrExist):
		return load(stateDir, now) // another process created it first: use theirs
	case err != nil:
		return nil, err
	}
	return ca, nil
}

// newRoot makes a root and its key, and their PEM.
func newRoot(name string, now func() time.Time) (ca *CA, keyPEM, rootPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("local CA: generate key: %w", err)
	}
	start := now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name + " " + start.Format("2006-01-02"), Organization: []string{name}},
		NotBefore:             start,
		NotAfter:              start.Add(RootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("local CA: create root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("local CA: %w", err)
	}
	ca = &CA{rootDER: der, key: key, now: now, leaves: map[string]*tls.Certificate{}}
	if ca.root, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, fmt.Errorf("local CA: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca, keyPEM, rootPEM, nil
}

// publish writes the key and the root into a new directory, synced, and renames it into
// place: the CA appears whole or not at all, whatever fails (a full disk, a crash) and
// whoever races (two processes creating it: one rename wins, the other finds fs.ErrExist).
func publish(stateDir string, keyPEM, rootPEM []byte) error {
	tmp, err := os.MkdirTemp(stateDir, ".ca-new-")
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	defer os.RemoveAll(tmp) // gone already once renamed
	if err := writeSynced(filepath.Join(tmp, "root.key"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, "root.crt"), rootPEM, 0o644); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, caDir(stateDir)); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return fs.ErrExist
		}
		return fmt.Errorf("local CA: %w", err)
	}
	return syncDir(stateDir)
}

func writeSynced(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("local CA: write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("local CA: sync %s: %w", dir, err)
	}
	return nil
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
	return ca.issue(Leaf{CommonName: domain, DNSNames: []string{domain}, Lifetime: LeafLifetime}, now)
}

// Leaf describes a certificate to issue: ECDSA P-256, for a server unless Client.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Client     bool // ExtKeyUsageClientAuth (a tunnel agent), else ServerAuth
	Lifetime   time.Duration
}

// Issue makes a certificate as l says, valid from now (less five minutes, for clocks
// behind) and never past the root.
func (ca *CA) Issue(l Leaf) (*tls.Certificate, error) { return ca.issue(l, ca.now()) }

func (ca *CA) issue(l Leaf, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("local CA: generate key for %s: %w", l.CommonName, err)
	}
	start := now.Add(-5 * time.Minute) // tolerate clients whose clocks run a little behind
	usage := x509.ExtKeyUsageServerAuth
	if l.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: l.CommonName},
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
		NotBefore:    start,
		NotAfter:     minTime(start.Add(l.Lifetime), ca.root.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("local CA: issue for %s: %w", l.CommonName, err)
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

// WriteFiles writes c's certificate chain and key as PEM, the key mode 0600, each
// through a temporary file renamed into place (the key first), so that a process watching
// them never reads half a file.
func WriteFiles(c *tls.Certificate, crtFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := replaceFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return replaceFile(crtFile, chain, 0o644)
}

func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // what a crash left
	if err := writeSynced(tmp, data, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
