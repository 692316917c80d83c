package autocert

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
)

// DNSConfig publishes DNS-01 records: by RFC 2136 dynamic update, or by a hook.
type DNSConfig struct {
	RFC2136 *RFC2136
	Exec    []string // HOOK... present|cleanup FQDN VALUE
	// PropagationTimeout bounds the wait for an rfc2136 record to be seen at its server,
	// and each run of the hook; zero means two minutes.
	PropagationTimeout time.Duration
}

// RFC2136 is an authoritative server taking TSIG-signed dynamic updates.
type RFC2136 struct {
	Server    string // host:port; also asked for the zone and for propagation
	KeyName   string // fully qualified
	Algorithm string // hmac-sha256, ...
	Secret    []byte
}

const defaultPropagation = 2 * time.Minute

func (c DNSConfig) timeout() time.Duration {
	if c.PropagationTimeout > 0 {
		return c.PropagationTimeout
	}
	return defaultPropagation
}

// challengeIssuer orders with one challenge type.
type challengeIssuer struct {
	challenge string
	iss       *certmagic.ACMEIssuer
}

// makeIssuers makes one certmagic issuer per challenge type offered: certmagic would
// otherwise use DNS-01 alone whenever it has a DNS solver, and would not say which type
// validated.
func (m *Manager) makeIssuers(roots *x509.CertPool) error {
	types := m.cfg.Challenges
	if len(types) == 0 {
		types = []string{ChallengeTLSALPN}
	}
	for _, ch := range types {
		iss, err := m.issuer(ch, roots)
		if err != nil {
			return err
		}
		m.issuers = append(m.issuers, challengeIssuer{ch, iss})
		m.magic.Issuers = append(m.magic.Issuers, iss)
	}
	return nil
}

func (m *Manager) issuer(challenge string, roots *x509.CertPool) (*certmagic.ACMEIssuer, error) {
	tmpl := certmagic.ACMEIssuer{CA: m.cfg.Directory, TestCA: m.cfg.Directory, Email: m.cfg.Email, Agreed: true,
		TrustedRoots: roots, ExternalAccount: m.cfg.EAB, Logger: zap.NewNop(),
		DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}
	switch challenge {
	case ChallengeTLSALPN:
		tmpl.DisableTLSALPNChallenge = false
		tmpl.ListenHost, tmpl.AltTLSALPNPort = splitListen(m.cfg.ListenAddr)
	case ChallengeHTTP:
		if m.cfg.HTTPAddr == "" {
			return nil, errors.New("http-01 is offered but tlsd has no HTTP listener to answer it: give --http-listen (e.g. :80)")
		}
		tmpl.DisableHTTPChallenge = false
		tmpl.ListenHost, tmpl.AltHTTPPort = splitListen(m.cfg.HTTPAddr)
	case ChallengeDNS:
		solver, err := m.dnsSolver()
		if err != nil {
			return nil, err
		}
		tmpl.DNS01Solver = solver
	default:
		return nil, fmt.Errorf("unknown challenge type %q", challenge)
	}
	return certmagic.NewACMEIssuer(m.magic, tmpl), nil
}

// dnsSolver publishes records through the configured provider. With rfc2136 the zone
// lookup and the propagation check ask the update server, never the system's resolvers;
// a hook is trusted to have published the record when it exits 0.
func (m *Manager) dnsSolver() (acmez.Solver, error) {
	c := m.cfg.DNS
	switch {
	case c.RFC2136 != nil:
		p, err := newRFC2136(*c.RFC2136)
		if err != nil {
			return nil, err
		}
		return &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{DNSProvider: p, TTL: time.Minute,
			PropagationTimeout: c.timeout(), Resolvers: []string{c.RFC2136.Server}, Logger: zap.NewNop()}}, nil
	case len(c.Exec) > 0:
		return &hookSolver{argv: c.Exec, timeout: c.timeout(), log: m.opts.Logger, issuer: m.cfg.Name}, nil
	}
	return nil, errors.New("dns-01 is offered but no DNS provider (rfc2136 or exec) is configured")
}

// issuersFor are the issuers that can prove name, in order of preference: only DNS-01
// proves a wildcard.
func (m *Manager) issuersFor(name string) []challengeIssuer {
	if !strings.HasPrefix(name, "*.") {
		return m.issuers
	}
	i := slices.IndexFunc(m.issuers, func(ci challengeIssuer) bool { return ci.challenge == ChallengeDNS })
	if i < 0 {
		return nil
	}
	return m.issuers[i : i+1]
}

// ServeHTTPChallenge answers an HTTP-01 validation request for this account, from
// memory or from the shared storage (so any edge of a fleet answers); false means r is
// not one.
func (m *Manager) ServeHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	for _, ci := range m.issuers {
		if ci.challenge == ChallengeHTTP && ci.iss.HandleHTTPChallenge(w, r) {
			return true
		}
	}
	return false
}
