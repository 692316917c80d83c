package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/schema"
)

// certSource gives an endpoint's certificate: how to get it during a handshake, the
// leaf being served now (for status), and for ACME the config answering TLS-ALPN-01.
type certSource struct {
	kind      string // admin.SourceFile, admin.SourceInternal or admin.SourceACME
	get       func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	leaf      func() *x509.Certificate
	challenge *tls.Config
	state     func() *admin.CertificateStatus // optional: issuance state (ACME)
}

// staticCert loads a certificate and key from files.
func staticCert(ep *schema.Endpoint) (certSource, error) {
	pair, err := tls.LoadX509KeyPair(ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key)
	if err != nil {
		return certSource{}, fmt.Errorf("endpoint %s: load certificate %s and key %s: %w", ep.Name, ep.TLS.Certificate.Crt, ep.TLS.Certificate.Key, err)
	}
	return certSource{
		kind: admin.SourceFile,
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
		kind: admin.SourceInternal,
		get:  func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Certificate(domain) },
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
		kind:      admin.SourceACME,
		get:       d.GetCertificate,
		leaf:      d.Leaf,
		challenge: m.ChallengeConfig(),
		state: func() *admin.CertificateStatus {
			st := d.Status()
			cs := &admin.CertificateStatus{State: st.State, Error: st.Error, NextRetry: st.NextRetry,
				NotAfter: st.NotAfter, Serial: st.Serial, Issuer: st.Issuer, RenewAt: st.RenewAt, Challenge: st.Challenge, Source: admin.SourceACME}
			return cs
		},
	}
}
