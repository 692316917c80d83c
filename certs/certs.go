// Package certs holds the small PEM and X.509 helpers shared by the loader and the data
// plane: parsing certificate chains and private keys, checking that they belong together,
// and deciding whether a certificate covers a server name.
//
// Errors never include key material; callers add the file name.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ParseCertificates decodes every CERTIFICATE block of data, in order. It fails when data
// holds no certificate or when a block does not parse.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("PEM block %d is a private key, not a certificate", n)
			}
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// ParsePrivateKey decodes the first private key block of data (PKCS#8, PKCS#1 or SEC 1).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM PRIVATE KEY block found")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("private key is encrypted; tlsd needs an unencrypted key")
		}
		return parseKeyDER(block.Type, block.Bytes)
	}
}

func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	if typ == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("private key is encrypted; tlsd needs an unencrypted key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s block does not parse as PKCS#8, PKCS#1 or SEC 1", typ)
}

// KeyMatches reports whether key is the private half of cert's public key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

// KeyAlgorithm names the key type of cert for messages ("ECDSA P-256", "RSA 2048", ...).
func KeyAlgorithm(cert *x509.Certificate) string {
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return cert.PublicKeyAlgorithm.String()
	}
}

// Covers reports whether cert is valid for domain. A wildcard domain ("*.example.com") is
// covered only by the same wildcard name, since it stands for every name under it; a plain
// name is covered by itself or by a wildcard one label above it. Comparison ignores case.
func Covers(cert *x509.Certificate, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if strings.HasPrefix(domain, "*.") {
		for _, san := range cert.DNSNames {
			if strings.EqualFold(san, domain) {
				return true
			}
		}
		return false
	}
	return cert.VerifyHostname(domain) == nil
}

// Names lists the DNS names a certificate is for, for error messages.
func Names(cert *x509.Certificate) []string {
	if len(cert.DNSNames) > 0 {
		return cert.DNSNames
	}
	if cert.Subject.CommonName != "" {
		return []string{cert.Subject.CommonName}
	}
	return nil
}

// AddFiles adds every certificate of the PEM files to pool. Errors name the file.
func AddFiles(pool *x509.CertPool, files ...string) error {
	return addFiles(pool, false, files)
}

// AddCAFiles is AddFiles for trust anchors of client certificates: every certificate must
// be a CA, since crypto/tls trusts any certificate in the pool as itself.
func AddCAFiles(pool *x509.CertPool, files ...string) error {
	return addFiles(pool, true, files)
}

func addFiles(pool *x509.CertPool, onlyCAs bool, files []string) error {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read certificates: %w", err)
		}
		list, err := ParseCertificates(data)
		if err != nil {
			return fmt.Errorf("certificates in %s: %w", f, err)
		}
		for _, c := range list {
			if onlyCAs && (!c.IsCA || !c.BasicConstraintsValid) {
				return fmt.Errorf("certificates in %s: %q is not a CA", f, c.Subject.CommonName)
			}
			pool.AddCert(c)
		}
	}
	return nil
}
