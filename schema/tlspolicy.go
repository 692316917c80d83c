package schema

import (
	"slices"
	"strconv"
)

// acmeALPN is the protocol ACME servers validate TLS-ALPN-01 with (RFC 8737): an edge
// that offered it to everyone would answer ordinary clients as challenges.
const acmeALPN = "acme-tls/1"

// checkTLSPolicy checks what the TLS settings say together: the version range, the ALPN
// list, and mutual TLS's strategy, CAs and allow rules. Which settings a terminate_at
// admits at all is checkMode's.
func (l *loader) checkTLSPolicy(ed *endpointDoc) {
	d, t := ed.doc, ed.ep.TLS
	if t.MaxVersion != "" && t.MinVersion != "" && t.MaxVersion < t.MinVersion {
		l.add(d, "/tls/max_version", SeverityError, "max-below-min",
			"max_version %q is below min_version %q: no TLS version would be left", t.MaxVersion, t.MinVersion)
	}
	if i := slices.Index(t.ALPN, acmeALPN); i >= 0 {
		l.add(d, "/tls/alpn/"+strconv.Itoa(i), SeverityError, "alpn-reserved",
			"%q is reserved for ACME TLS-ALPN-01 validations; tlsd answers those itself", acmeALPN)
	}
	if t.MutualTLS != nil {
		l.checkMutualTLS(ed)
	}
}

func (l *loader) checkMutualTLS(ed *endpointDoc) {
	d, m := ed.doc, ed.ep.TLS.MutualTLS
	noCAs := len(m.CertificateAuthorities) == 0
	switch {
	case m.Allow != nil && noCAs:
		l.addKey(d, "/tls/mutual_tls/allow", SeverityError, "allow-without-cas",
			"tls.mutual_tls.allow applies only to verified certificates: give certificate_authorities to verify them against")
	case m.Allow != nil && m.VerificationStrategy == StrategyRequireAny:
		l.add(d, "/tls/mutual_tls/verification_strategy", SeverityError, "allow-unverified",
			"verification_strategy: require-any verifies no certificate, so tls.mutual_tls.allow could never apply; use require-and-verify or request")
	case noCAs && m.VerificationStrategy != StrategyRequireAny:
		l.addKey(d, "/tls/mutual_tls", SeverityError, "client-cas-required",
			"tls.mutual_tls with verification_strategy: %s needs certificate_authorities to verify client certificates against", m.VerificationStrategy)
	}
	if m.Allow != nil {
		for i, n := range m.Allow.DNSNames {
			if p := domainProblem(n); p != "" {
				l.add(d, "/tls/mutual_tls/allow/dns_names/"+strconv.Itoa(i), SeverityError, "invalid-domain",
					"allow.dns_names entry %q is not a DNS name or a one-label wildcard: %s", n, p)
			}
		}
	}
	if m.VerificationStrategy == StrategyRequest && ed.ep.UpstreamProxyProtocol != "v2" {
		l.add(d, "/tls/mutual_tls/verification_strategy", SeverityWarning, "request-unseen",
			"verification_strategy: request admits clients without a certificate, and without upstream_proxy_protocol: v2 the upstream cannot tell them from verified ones")
	}
}
