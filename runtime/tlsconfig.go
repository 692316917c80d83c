package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/internal/localca"
	"github.com/tlsd/tlsd/schema"
)

// aeadSuites are the TLS 1.2 suites tlsd offers: forward-secret AEAD only, no CBC (which
// scanners flag as LUCKY13-prone). TLS 1.3's suites are all AEAD and not configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLSConfig builds the tls.Config of an endpoint tlsd terminates. It is never
// modified after it is built, apart from the session ticket keys that crypto/tls lets
// a server rotate.
func serverTLSConfig(ep *schema.Endpoint, internal func() (*localca.CA, error)) (*tls.Config, func() *x509.Certificate, error) {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: aeadSuites,
	}
	if ep.TerminateAt == schema.TerminateEdge && ep.TLS.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	var leaf func() *x509.Certificate
	switch {
	case ep.TLS.Certificate != nil:
		pair, err := tls.LoadX509KeyPair(ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: load certificate %s and key %s: %w", ep.Name, ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		leaf = func() *x509.Certificate { return pair.Leaf }
	case ep.TLS.Issuer == schema.InternalIssuer:
		ca, err := internal()
		if err != nil {
			return nil, nil, err
		}
		if _, err := ca.Certificate(ep.Domain); err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: %w", ep.Name, err)
		}
		domain := ep.Domain
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Certificate(domain) }
		leaf = func() *x509.Certificate {
			if c, err := ca.Certificate(domain); err == nil {
				return c.Leaf
			}
			return nil
		}
	default:
		return nil, nil, fmt.Errorf("endpoint %s: issuer %q: automatic ACME certificates are not available in this version of tlsd; use tls.certificate or issuer: internal",
			ep.Name, ep.TLS.Issuer)
	}
	if ep.TLS.MutualTLS != nil {
		pool, err := clientCAPool(ep.TLS.MutualTLS.CertificateAuthorities)
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: %w", ep.Name, err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, leaf, nil
}

func clientCAPool(files []string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		list, err := certs.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("client CA file %s: %w", f, err)
		}
		for _, c := range list {
			pool.AddCert(c)
		}
	}
	return pool, nil
}
