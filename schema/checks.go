package schema

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// checkIssuers runs the checks of Issuer documents that the schema cannot express.
func (l *loader) checkIssuers() {
	seen := map[string]*issuerDoc{}
	for _, id := range l.issuers {
		if id.is.Name == InternalIssuer {
			l.add(id.doc, "/name", SeverityError, "reserved-name",
				"issuer name %q is reserved for tlsd's built-in local CA; choose another name", InternalIssuer)
		}
		if first, dup := seen[id.is.Name]; dup {
			l.add(id.doc, "/name", SeverityError, "duplicate-name",
				"issuer name %q is already used at %s", id.is.Name, posString(first.doc.pos("/name")))
		} else {
			seen[id.is.Name] = id
			l.issuerByName[id.is.Name] = id.is
		}
		for i, root := range id.is.ACME.CARoots {
			l.checkCAFile(id.doc, fmt.Sprintf("/acme/ca_roots/%d", i), root, false)
		}
		l.checkACME(id)
	}
	used := map[string]bool{}
	for _, ed := range l.endpoints {
		used[ed.ep.TLS.Issuer] = true
	}
	for _, id := range l.issuers {
		if !used[id.is.Name] && l.nEndpoints > 0 && len(l.endpoints) == l.nEndpoints { // every endpoint was readable
			l.add(id.doc, "/name", SeverityWarning, "unused-issuer", "no endpoint uses issuer %q", id.is.Name)
		}
	}
}

// checkEndpoints runs the per-endpoint and cross-endpoint checks.
func (l *loader) checkEndpoints() {
	names := map[string]*endpointDoc{}
	type route struct{ listen, domain string }
	routes := map[route]*endpointDoc{}
	for _, ed := range l.endpoints {
		ep := ed.ep
		l.checkRestriction(ed)
		if first, dup := names[ep.Name]; dup {
			l.add(ed.doc, "/name", SeverityError, "duplicate-name",
				"endpoint name %q is already used at %s", ep.Name, posString(first.doc.pos("/name")))
		} else {
			names[ep.Name] = ed
		}
		r := route{ep.Listen, ep.Domain}
		if first, dup := routes[r]; dup {
			l.add(ed.doc, "/domain", SeverityError, "duplicate-domain",
				"domain %q on %s is already served by endpoint %q at %s",
				ep.Domain, listenName(ep.Listen), first.ep.Name, posString(first.doc.pos("/domain")))
		} else {
			routes[r] = ed
		}
		l.checkValues(ed)
		l.checkMode(ed)
		l.checkTLSPolicy(ed)
		l.checkLimits(ed)
		l.checkUpstreams(ed)
		l.checkIssuerRef(ed)
		l.checkACMERef(ed)
		l.checkEndpointFiles(ed)
	}
}

func listenName(listen string) string {
	if listen == "" {
		return "the default listener"
	}
	return listen
}

// checkValues catches what the schema's patterns let through.
func (l *loader) checkValues(ed *endpointDoc) {
	ep := ed.ep
	if p := domainProblem(ep.Domain); p != "" {
		l.add(ed.doc, "/domain", SeverityError, "invalid-domain", "domain %q is not a valid server name: %s", ep.Domain, p)
	}
	if ep.Listen != "" {
		if p := listenProblem(ep.Listen); p != "" {
			l.add(ed.doc, "/listen", SeverityError, "invalid-listen", "listen %q is not a valid address: %s", ep.Listen, p)
		}
	}
	if raw, ok := ed.doc.instance.(map[string]any)["upstream"].(string); ok {
		if p := upstreamProblem(strings.TrimPrefix(raw, UpstreamTLSPrefix)); p != "" {
			l.add(ed.doc, "/upstream", SeverityError, "invalid-upstream", "upstream %q is not valid: %s", ep.Upstream, p)
		}
	}
}

// checkMode enforces which TLS settings each terminate_at allows. The schema states the
// same rules for editors; these messages say why.
func (l *loader) checkMode(ed *endpointDoc) {
	before := len(l.diags)
	d, tls := ed.doc, ed.ep.TLS
	has := func(field string) bool { return d.has("/tls/" + field) }
	notAllowed := func(field, why string) {
		if has(field) {
			l.addKey(d, "/tls/"+field, SeverityError, "field-not-allowed", "tls.%s is not allowed with terminate_at: %s: %s",
				field, ed.ep.TerminateAt, why)
		}
	}
	switch ed.ep.TerminateAt {
	case TerminateUpstream:
		const zk = "zero-knowledge endpoints never give tlsd a key; use terminate_at: edge or agent to terminate TLS in tlsd"
		notAllowed("certificate", zk)
		notAllowed("issuer", zk)
		notAllowed("mutual_tls", "mutual TLS needs TLS termination; use terminate_at: edge or agent")
		notAllowed("min_version", "the upstream terminates TLS and chooses its versions")
		notAllowed("max_version", "the upstream terminates TLS and chooses its versions")
		notAllowed("alpn", "the upstream terminates TLS and negotiates ALPN with the client itself")
	case TerminateAgent:
		notAllowed("min_version", "the agent's minimum TLS version is fixed at 1.2; min_version is for terminate_at: edge")
		notAllowed("max_version", "the agent's TLS versions are fixed (1.2 and 1.3); max_version is for terminate_at: edge")
		l.checkCertOrIssuer(d, tls, "terminate_at: agent requires tls.certificate (crt and key), or tls.issuer naming an ACME issuer that offers dns-01")
	case TerminateEdge:
		l.checkCertOrIssuer(d, tls, `terminate_at: edge requires tls.certificate or tls.issuer (e.g. issuer: internal for tlsd's local CA)`)
	}
	if ed.modeFailed && len(l.diags) == before {
		// The schema and these checks disagree: say so rather than lose the error.
		l.add(d, "/terminate_at", SeverityError, "schema",
			"the TLS settings do not fit terminate_at: %s", ed.ep.TerminateAt)
	}
}

// checkCertOrIssuer: a terminating endpoint takes its certificate from files or from an
// issuer, exactly one of them.
func (l *loader) checkCertOrIssuer(d *document, tls EndpointTLS, missing string) {
	switch {
	case tls.Certificate == nil && tls.Issuer == "":
		l.add(d, "/terminate_at", SeverityError, "certificate-required", "%s", missing)
	case tls.Certificate != nil && tls.Issuer != "":
		l.addKey(d, "/tls/issuer", SeverityError, "certificate-and-issuer",
			"give either tls.certificate or tls.issuer, not both")
	}
}

func (l *loader) checkIssuerRef(ed *endpointDoc) {
	name := ed.ep.TLS.Issuer
	if name == "" || name == InternalIssuer || l.issuerNames[name] {
		return
	}
	known := append(slices.Sorted(maps.Keys(l.issuerNames)), InternalIssuer)
	msg := fmt.Sprintf("unknown issuer %q", name)
	if s := suggest(name, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else {
		msg += fmt.Sprintf("; declare an Issuer document named %q, or use %q", name, InternalIssuer)
	}
	l.add(ed.doc, "/tls/issuer", SeverityError, "unknown-issuer", "%s", msg)
}

// add records a diagnostic at the value at path of d.
func (l *loader) add(d *document, path string, sev Severity, code, format string, args ...any) {
	l.diags = append(l.diags, diagAt(d.pos(path), toDotted(path), sev, code, format, args...))
}

// addKey records a diagnostic at the key of the field at path of d.
func (l *loader) addKey(d *document, path string, sev Severity, code, format string, args ...any) {
	l.diags = append(l.diags, diagAt(d.keyPos(path), toDotted(path), sev, code, format, args...))
}

func posString(p Pos) string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}
