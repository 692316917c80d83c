package termination

import (
	"crypto/tls"
	"crypto/x509"
	"time"
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

// Policy is what one endpoint asks of the TLS that tlsd terminates for it.
type Policy struct {
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; zero means TLS 1.2. MaxVersion
	// likewise; zero means TLS 1.3.
	MinVersion, MaxVersion uint16
	// ALPN lists the protocols offered, in the server's order of preference; a client
	// offering none of them is refused (no_application_protocol).
	ALPN           []string
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// MutualTLS, when set, asks clients for a certificate: ClientCAs are what it must
	// chain to, Strategy one of RequireAndVerify (the default), RequireAny and Request,
	// and Allow, if not empty, what a verified certificate must match.
	MutualTLS bool
	ClientCAs *x509.CertPool
	Strategy  string
	Allow     *Allow
	// Challenge, when set, answers ACME TLS-ALPN-01 validations for the endpoint's
	// domain; only a client offering nothing but acme-tls/1 gets it.
	Challenge *tls.Config
	// Now is the clock the session ticket keys age by; nil means time.Now.
	Now func() time.Time
	// Tickets, when set, are a fleet's shared ticket secrets: every process given the same
	// secrets and TicketScope (the endpoint's name) resumes the others' tickets. Until it
	// has secrets, the endpoint's own keys seal them.
	Tickets     SharedTickets
	TicketScope string
}

// ServerConfig builds the tls.Config of an endpoint: AEAD suites only, TLS 1.3 preferred,
// session tickets sealed by keys of its own that rotate. Nothing modifies it afterwards,
// so it may serve handshakes at once and be kept across reloads.
func ServerConfig(p Policy) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     max(p.MinVersion, tls.VersionTLS12),
		MaxVersion:     p.MaxVersion,
		NextProtos:     p.ALPN,
		CipherSuites:   aeadSuites,
		GetCertificate: p.GetCertificate,
	}
	if p.MutualTLS || p.ClientCAs != nil {
		cfg.ClientCAs = p.ClientCAs
		cfg.ClientAuth = clientAuth(p.Strategy)
	}
	if !p.Allow.empty() {
		cfg.VerifyConnection = verifyAllowed(p.Allow)
	}
	if ch := p.Challenge; ch != nil {
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == ACMEALPN {
				return ch, nil
			}
			return nil, nil
		}
	}
	keys := newTicketKeys(p.Now)
	keys.shared, keys.scope = p.Tickets, p.TicketScope
	keys.install(cfg)
	return cfg
}
