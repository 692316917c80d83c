package termination

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Verification strategies of mutual TLS (ngrok's names).
const (
	RequireAndVerify = "require-and-verify" // a certificate that chains to the client CAs
	RequireAny       = "require-any"        // a certificate, not verified
	Request          = "request"            // asked for; a client without one is admitted, one with must verify
)

// clientAuth is the crypto/tls mode of a strategy. `request` verifies what it gets: a
// certificate that does not chain is refused rather than passed on as if it might.
func clientAuth(strategy string) tls.ClientAuthType {
	switch strategy {
	case RequireAny:
		return tls.RequireAnyClientCert
	case Request:
		return tls.VerifyClientCertIfGiven
	}
	return tls.RequireAndVerifyClientCert
}

// Allow is mutual TLS's allow list: a verified client certificate must match at least
// one entry of any field. An empty Allow admits every verified certificate.
type Allow struct {
	CommonNames         []string
	DNSNames            []string // "*.example.com" matches exactly one label
	URIs                []string
	EmailAddresses      []string
	OrganizationalUnits []string
}

func (a *Allow) empty() bool {
	return a == nil || len(a.CommonNames)+len(a.DNSNames)+len(a.URIs)+len(a.EmailAddresses)+len(a.OrganizationalUnits) == 0
}

// admits reports whether cert matches an entry.
func (a *Allow) admits(cert *x509.Certificate) bool {
	if slices.Contains(a.CommonNames, cert.Subject.CommonName) {
		return true
	}
	for _, u := range cert.URIs {
		if slices.Contains(a.URIs, u.String()) {
			return true
		}
	}
	return anyIn(a.EmailAddresses, cert.EmailAddresses) || anyIn(a.OrganizationalUnits, cert.Subject.OrganizationalUnit) ||
		slices.ContainsFunc(cert.DNSNames, func(n string) bool {
			return slices.ContainsFunc(a.DNSNames, func(p string) bool { return matchDNS(p, n) })
		})
}

func anyIn(allowed, have []string) bool {
	return slices.ContainsFunc(have, func(v string) bool { return slices.Contains(allowed, v) })
}

// matchDNS matches a certificate's DNS name against an allow entry, case-insensitively;
// "*." stands for exactly one label.
func matchDNS(pattern, name string) bool {
	pattern, name = strings.ToLower(pattern), strings.ToLower(strings.TrimSuffix(name, "."))
	suffix, wild := strings.CutPrefix(pattern, "*.")
	if !wild {
		return pattern == name
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && label != "" && rest == suffix
}

// ErrNotAllowed is wrapped by the refusal of a verified certificate that matches no
// allow entry; the wrapping error names the certificate and the rules.
var ErrNotAllowed = errors.New("client certificate not allowed")

// verifyAllowed is the tls.Config.VerifyConnection of an endpoint with allow rules. It
// sees only certificates that verified (a client of `request` without one passes).
func verifyAllowed(a *Allow) func(tls.ConnectionState) error {
	return func(st tls.ConnectionState) error {
		if len(st.VerifiedChains) == 0 || a.admits(st.PeerCertificates[0]) {
			return nil
		}
		return fmt.Errorf("%w: %s matches none of %s", ErrNotAllowed, describeCert(st.PeerCertificates[0]), a)
	}
}

// String lists the rules, as a refusal names them.
func (a *Allow) String() string {
	var parts []string
	for _, f := range []struct {
		name   string
		values []string
	}{
		{"common_names", a.CommonNames}, {"dns_names", a.DNSNames}, {"uris", a.URIs},
		{"email_addresses", a.EmailAddresses}, {"organizational_units", a.OrganizationalUnits},
	} {
		if len(f.values) > 0 {
			parts = append(parts, fmt.Sprintf("%s %q", f.name, f.values))
		}
	}
	return "allow " + strings.Join(parts, ", ")
}

// maxCertField bounds each certificate field a refusal quotes: the client wrote them.
const maxCertField = 64

// describeCert names a certificate by the fields allow rules look at, each bounded and
// quoted (so control characters are escaped), at most a few of each.
func describeCert(c *x509.Certificate) string {
	uris := make([]string, 0, len(c.URIs))
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	s := fmt.Sprintf("certificate CN=%s", quote(c.Subject.CommonName))
	for _, f := range []struct {
		name   string
		values []string
	}{
		{"OU", c.Subject.OrganizationalUnit}, {"DNS", c.DNSNames}, {"URI", uris}, {"email", c.EmailAddresses},
	} {
		for i, v := range f.values {
			if i == 3 {
				s += fmt.Sprintf(" (+%d %s)", len(f.values)-3, f.name)
				break
			}
			s += " " + f.name + "=" + quote(v)
		}
	}
	return s
}

func quote(s string) string {
	if len(s) > maxCertField {
		return fmt.Sprintf("%q...(%d bytes)", s[:maxCertField], len(s))
	}
	return fmt.Sprintf("%q", s)
}
