package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

func TestCovers(t *testing.T) {
	ca, err := testpki.NewCA("ca", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	exact, _ := ca.Issue(testpki.Options{DNSNames: []string{"billing.example.com"}})
	wild, _ := ca.Issue(testpki.Options{DNSNames: []string{"*.example.com"}})
	cases := []struct {
		cert   *testpki.Pair
		domain string
		want   bool
	}{
		{exact, "billing.example.com", true},
		{exact, "BILLING.example.com", true},
		{exact, "api.example.com", false},
		{exact, "*.example.com", false}, // a wildcard endpoint needs a wildcard certificate
		{wild, "api.example.com", true},
		{wild, "*.example.com", true},
		{wild, "a.b.example.com", false}, // one label only
		{wild, "example.com", false},
	}
	for _, c := range cases {
		if got := Covers(c.cert.Cert, c.domain); got != c.want {
			t.Errorf("Covers(%v, %q) = %v, want %v", c.cert.Cert.DNSNames, c.domain, got, c.want)
		}
	}
}

func TestKeyParsingAndMatching(t *testing.T) {
	ca, _ := testpki.NewCA("ca", time.Time{}, time.Time{})
	leaf, _ := ca.Issue(testpki.Options{DNSNames: []string{"a.example.com"}})
	key, err := ParsePrivateKey(leaf.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !KeyMatches(leaf.Cert, key) || KeyMatches(ca.Cert, key) {
		t.Error("KeyMatches got the pairing wrong")
	}
	sec1, _ := x509.MarshalECPrivateKey(leaf.Key)
	if _, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err != nil {
		t.Errorf("SEC 1 key: %v", err)
	}
	bad := []struct{ name, pem, want string }{
		{"empty", "", "no PEM PRIVATE KEY"},
		{"certificate", string(leaf.CertPEM()), "no PEM PRIVATE KEY"},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
		{"garbage DER", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not parse"},
	}
	for _, b := range bad {
		_, err := ParsePrivateKey([]byte(b.pem))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err = %v, want %q", b.name, err, b.want)
		}
	}
}

func TestParseCertificates(t *testing.T) {
	ca, _ := testpki.NewCA("ca", time.Time{}, time.Time{})
	leaf, _ := ca.Issue(testpki.Options{DNSNames: []string{"a.example.com"}})
	chain, err := ParseCertificates(append(leaf.CertPEM(), ca.CertPEM()...))
	if err != nil || len(chain) != 2 || chain[0].DNSNames[0] != "a.example.com" {
		t.Fatalf("chain: %v, %d certs", err, len(chain))
	}
	if _, err := ParseCertificates(leaf.KeyPEM()); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a key given as certificate: %v", err)
	}
	if _, err := ParseCertificates([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("garbage certificate accepted")
	}
	// The error names the block, never echoes key material.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	_, err = ParseCertificates(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil || strings.Contains(err.Error(), "BEGIN") {
		t.Errorf("err = %v", err)
	}
	if KeyAlgorithm(leaf.Cert) != "ECDSA P-256" {
		t.Errorf("KeyAlgorithm = %q", KeyAlgorithm(leaf.Cert))
	}
}

// TestAddCAFilesRefusesLeaves: a leaf in a client-CA bundle would be trusted as itself.
func TestAddCAFilesRefusesLeaves(t *testing.T) {
	ca, err := testpki.NewCA("clients CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := testpki.NewCA("mallory's CA", time.Time{}, time.Time{})
	mallory, _ := stranger.Issue(testpki.Options{CommonName: "mallory", Client: true})
	dir := t.TempDir()
	onlyCA, mixed := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "mixed.pem")
	os.WriteFile(onlyCA, ca.CertPEM(), 0o644)
	os.WriteFile(mixed, append(ca.CertPEM(), mallory.CertPEM()...), 0o644)
	if err := AddCAFiles(x509.NewCertPool(), onlyCA); err != nil {
		t.Errorf("a bundle of CAs: %v", err)
	}
	if err := AddCAFiles(x509.NewCertPool(), mixed); err == nil || !strings.Contains(err.Error(), `"mallory" is not a CA`) {
		t.Errorf("a bundle with a leaf: %v", err)
	}
}
