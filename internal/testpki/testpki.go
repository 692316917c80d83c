// Package testpki issues throw-away certificates (ECDSA P-256) for tests, fixtures and
// demo files: a CA, leaves for server names, client certificates, and keys written as PEM.
// Nothing here is for production keys.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// Pair is a certificate and its key.
type Pair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	DER  []byte
}

// Options describe a certificate to issue.
type Options struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []string // e.g. SPIFFE IDs; must parse as URLs
	Emails     []string
	OUs        []string  // organizational units of the subject
	NotBefore  time.Time // zero: an hour ago
	NotAfter   time.Time // zero: NotBefore + 1 year
	IsCA       bool
	Client     bool // client authentication instead of server
}

// NewCA makes a self-signed CA.
func NewCA(name string, notBefore, notAfter time.Time) (*Pair, error) {
	return issue(nil, Options{CommonName: name, IsCA: true, NotBefore: notBefore, NotAfter: notAfter})
}

// Issue signs a certificate with p, which must be a CA.
func (p *Pair) Issue(o Options) (*Pair, error) {
	return issue(p, o)
}

func issue(parent *Pair, o Options) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = o.NotBefore.AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"tlsd test PKI"}, OrganizationalUnit: o.OUs},
		DNSNames:              o.DNSNames,
		EmailAddresses:        o.Emails,
		IPAddresses:           o.IPs,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
	}
	for _, u := range o.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("uri SAN: %w", err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	switch {
	case o.IsCA:
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	case o.Client:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	signer, signerCert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, signerCert = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return &Pair{Cert: cert, Key: key, DER: der}, nil
}

// CertPEM is the certificate as PEM.
func (p *Pair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.DER})
}

// KeyPEM is the private key as PKCS#8 PEM.
func (p *Pair) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		panic(fmt.Sprintf("marshal a freshly generated P-256 key: %v", err)) // cannot happen
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFiles writes the certificate (followed by chain, if any) to crt and the key to key
// (mode 0600). An empty name skips that file.
func (p *Pair) WriteFiles(crt, key string, chain ...*Pair) error {
	if crt != "" {
		data := p.CertPEM()
		for _, c := range chain {
			data = append(data, c.CertPEM()...)
		}
		if err := os.WriteFile(crt, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", crt, err)
		}
	}
	if key != "" {
		if err := os.WriteFile(key, p.KeyPEM(), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
	}
	return nil
}
