package schema

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// checkACME runs the checks of an Issuer's acme settings that the schema cannot express.
func (l *loader) checkACME(id *issuerDoc) {
	a, d := &id.is.ACME, id.doc
	switch {
	case a.Offers(ChallengeDNS) && a.DNS == nil:
		l.addKey(d, "/acme/challenges", SeverityError, "dns-required",
			"challenges lists dns-01, which needs acme.dns (rfc2136 or exec) to publish the TXT record")
	case a.DNS != nil && !a.Offers(ChallengeDNS):
		l.addKey(d, "/acme/dns", SeverityWarning, "dns-unused",
			"acme.dns is set but challenges does not list dns-01, so it is never used; add dns-01 to challenges")
	}
	if a.Offers(ChallengeHTTP) && !l.opts.HTTPListen && l.opts.Role != RoleAgent {
		l.addKey(d, "/acme/challenges", SeverityWarning, "http-listen-required",
			"issuer %q offers http-01, which tlsd run and tlsd edge answer only on --http-listen (e.g. :80): without it they refuse to start", id.is.Name)
	}
	if a.PropagationTimeout != "" {
		a.PropagationTimeout = l.positiveDuration(d, "/acme/propagation_timeout", a.PropagationTimeout)
	}
	if r := a.DNS.rfc2136(); r != nil {
		l.checkRFC2136(d, r)
	}
	if l.opts.SkipFiles || !l.issuerNeedsFiles(id.is.Name) {
		return
	}
	if e := a.ExternalAccount; e != nil {
		l.checkSecret(d, "/acme/external_account/mac_key_file", e.MACKeyFile)
	}
	if r := a.DNS.rfc2136(); r != nil {
		l.checkSecret(d, "/acme/dns/rfc2136/tsig_secret_file", r.TSIGSecretFile)
	}
	if a.DNS != nil && len(a.DNS.Exec) > 0 {
		l.checkHook(d, a.DNS.Exec[0])
	}
}

func (p *DNSProvider) rfc2136() *RFC2136 {
	if p == nil {
		return nil
	}
	return p.RFC2136
}

// checkRFC2136 checks the update server and key name, and writes them canonically:
// host:port and a fully qualified name.
func (l *loader) checkRFC2136(d *document, r *RFC2136) {
	server, err := DNSServerAddr(r.Server)
	if err != nil {
		l.add(d, "/acme/dns/rfc2136/server", SeverityError, "invalid-dns-setting", "rfc2136.server %v", err)
	} else {
		r.Server = server
	}
	name := strings.TrimSuffix(r.TSIGKeyName, ".")
	if p := keyNameProblem(name); p != "" {
		l.add(d, "/acme/dns/rfc2136/tsig_key_name", SeverityError, "invalid-dns-setting",
			"tsig_key_name %q is not a DNS name (%s): write it as the server's key file names it, e.g. tlsd.", r.TSIGKeyName, p)
		return
	}
	r.TSIGKeyName = strings.ToLower(name) + "."
}

// keyNameProblem says what is wrong with a TSIG key name, or "": key names are domain
// names, though servers allow underscores in them.
func keyNameProblem(name string) string {
	if name == "" {
		return "it is empty"
	}
	for _, label := range strings.Split(name, ".") {
		if p := labelProblem(strings.ReplaceAll(label, "_", "a")); p != "" {
			return p
		}
	}
	return ""
}

// DNSServerAddr is host:port of a DNS server written as host or host:port (port 53).
func DNSServerAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), "53"
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:53 or ns1.example.com)", s)
	}
	if p, err := net.LookupPort("udp", port); err != nil || p == 0 {
		return "", fmt.Errorf("%q has no valid port", s)
	}
	return net.JoinHostPort(host, port), nil
}

// positiveDuration checks the duration at path and returns it canonical ("" if invalid).
func (l *loader) positiveDuration(d *document, path, s string) string {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		l.add(d, path, SeverityError, "invalid-duration", "%s %q is not a positive duration: write e.g. \"90s\" or \"2m\"", toDotted(path), s)
		return ""
	}
	return v.String()
}

// issuerNeedsFiles: the secrets of an issuer are read by whoever orders with it, which is
// the side of a split deployment that terminates its endpoints.
func (l *loader) issuerNeedsFiles(name string) bool {
	if l.opts.Role == "" || l.opts.Role == RoleAll {
		return true
	}
	for _, ed := range l.endpoints {
		if ed.ep.TLS.Issuer == name && NeedsFiles(ed.ep, l.opts.Role, l.opts.Agent) {
			return true
		}
	}
	return false
}

// checkSecret checks a secret file: it reads, decodes, and only its owner can read it.
func (l *loader) checkSecret(d *document, path, file string) {
	if _, err := ReadSecret(file); err != nil {
		code := "invalid-secret"
		if _, c, rerr := readRef(file); rerr != nil {
			code = c
		}
		l.add(d, path, SeverityError, code, "%v", err)
		return
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		l.add(d, path, SeverityWarning, "key-permissions",
			"secret %s is readable by group or others (mode %04o); chmod 600 it", file, fi.Mode().Perm())
	}
}

// checkHook checks that an exec hook given by path exists and may be run.
func (l *loader) checkHook(d *document, hook string) {
	if !strings.Contains(hook, "/") {
		return // looked up on PATH when it runs, which may differ from this machine's
	}
	fi, err := os.Stat(hook)
	switch {
	case err != nil:
		l.add(d, "/acme/dns/exec/0", SeverityError, "file-missing", "hook %s does not exist", hook)
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		l.add(d, "/acme/dns/exec/0", SeverityError, "not-executable", "hook %s is not an executable file; chmod +x it", hook)
	}
}

// ReadSecret reads a base64 secret file (a TSIG secret, an EAB MAC key): standard or URL
// alphabet, padded or not, surrounding space ignored. Errors name the file, never its
// contents.
func ReadSecret(file string) ([]byte, error) {
	data, _, err := readRef(file)
	if err != nil {
		return nil, err
	}
	text := strings.TrimRight(strings.TrimSpace(string(data)), "=")
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
		if key, err := enc.DecodeString(text); err == nil && len(key) > 0 {
			return key, nil
		}
	}
	return nil, fmt.Errorf("%s does not hold a base64 secret (one line, as the CA or DNS server gave it)", file)
}

// checkACMERef checks what an endpoint asks of its ACME issuer: a wildcard name or a
// certificate kept by the agent can only be proven by DNS-01.
func (l *loader) checkACMERef(ed *endpointDoc) {
	ep := ed.ep
	name := ep.TLS.Issuer
	if name == "" {
		return
	}
	agentSide := ep.TerminateAt == TerminateAgent
	if name == InternalIssuer {
		if agentSide {
			l.add(ed.doc, "/tls/issuer", SeverityError, "agent-issuer-needs-dns-01",
				"terminate_at: agent cannot use the internal issuer: the local CA lives with the edge; give tls.certificate, or an ACME issuer that offers dns-01")
		}
		return
	}
	is := l.issuerByName[name]
	if is == nil || is.ACME.Offers(ChallengeDNS) {
		return
	}
	switch {
	case agentSide:
		l.add(ed.doc, "/tls/issuer", SeverityError, "agent-issuer-needs-dns-01",
			"issuer %q does not offer dns-01, the only challenge an agent can answer without an inbound port; add dns-01 (with acme.dns) to its challenges, or give tls.certificate", name)
	case strings.HasPrefix(ep.Domain, "*."):
		l.add(ed.doc, "/tls/issuer", SeverityError, "wildcard-needs-dns-01",
			"domain %q is a wildcard, which ACME CAs validate only by DNS-01, and issuer %q does not offer it; add dns-01 (with acme.dns) to its challenges, or give tls.certificate", ep.Domain, name)
	}
}
