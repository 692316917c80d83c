package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/internal/autocert"
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

// certSource gives an endpoint's certificate: how to get it during a handshake, the
// leaf being served now (for status), and for ACME the config answering TLS-ALPN-01.
type certSource struct {
	get       func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	leaf      func() *x509.Certificate
	challenge *tls.Config
	state     func() *CertificateStatus // optional: issuance state (ACME)
}

// serverTLSConfig builds the tls.Config of an endpoint tlsd terminates. It is never
// modified after it is built, apart from the session ticket keys that crypto/tls lets
// a server rotate.
func serverTLSConfig(ep *schema.Endpoint, src certSource) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   aeadSuites,
		GetCertificate: src.get,
	}
	if ep.TerminateAt == schema.TerminateEdge && ep.TLS.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if ep.TLS.MutualTLS != nil {
		pool := x509.NewCertPool()
		if err := certs.AddFiles(pool, ep.TLS.MutualTLS.CertificateAuthorities...); err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", ep.Name, err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if ch := src.challenge; ch != nil {
		// Only a TLS-ALPN-01 validation offers acme-tls/1, and only it gets the
		// challenge config: ordinary clients never see that ALPN value.
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == autocert.ALPN {
				return ch, nil
			}
			return nil, nil
		}
	}
	return cfg, nil
}

// staticCert loads a certificate and key from files.
func staticCert(ep *schema.Endpoint) (certSource, error) {
	pair, err := tls.LoadX509KeyPair(ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key)
	if err != nil {
		return certSource{}, fmt.Errorf("endpoint %s: load certificate %s and key %s: %w", ep.Name, ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key, err)
	}
	return certSource{
		get:  func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil },
		leaf: func() *x509.Certificate { return pair.Leaf },
	}, nil
}

// internalCert issues from the local CA, renewing on use.
func internalCert(ep *schema.Endpoint, ca *localca.CA) (certSource, error) {
	if _, err := ca.Certificate(ep.Domain); err != nil {
		return certSource{}, fmt.Errorf("endpoint %s: %w", ep.Name, err)
	}
	domain := ep.Domain
	return certSource{
		get: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Certificate(domain) },
		leaf: func() *x509.Certificate {
			if c, err := ca.Certificate(domain); err == nil {
				return c.Leaf
			}
			return nil
		},
	}, nil
}

// acmeCert serves what the ACME manager has for the domain, and answers its challenges.
func acmeCert(m *autocert.Manager, domain string) certSource {
	d := m.Domain(domain)
	return certSource{
		get:       d.GetCertificate,
		leaf:      d.Leaf,
		challenge: m.ChallengeConfig(),
		state: func() *CertificateStatus {
			st := d.Status()
			cs := &CertificateStatus{State: st.State, Error: st.Error, NextRetry: st.NextRetry,
				NotAfter: st.NotAfter, Serial: st.Serial, Issuer: st.Issuer}
			return cs
		},
	}
}
