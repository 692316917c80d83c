package schema

import (
	"fmt"
	"strings"
)

// checkUpstreams checks the upstream or pool, how tlsd speaks TLS to it, and its health
// checks.
func (l *loader) checkUpstreams(ed *endpointDoc) {
	d, ep := ed.doc, ed.ep
	switch {
	case ep.Upstream != "" && len(ep.Upstreams) > 0:
		l.addKey(d, "/upstreams", SeverityError, "upstream-conflict", "give upstream or upstreams, not both")
		return
	case ep.Upstream == "" && len(ep.Upstreams) == 0:
		return // the schema said upstream is missing
	}
	l.checkPoolEntries(ed)
	tlsUp := strings.HasPrefix(ep.Pool()[0], UpstreamTLSPrefix)
	if tlsUp && ep.TerminateAt == TerminateUpstream {
		l.add(d, upstreamPath(ep), SeverityError, "tls-upstream-passthrough",
			"tls:// needs terminate_at: edge or agent: with terminate_at: upstream the client's own TLS goes through untouched, and tlsd would encrypt it twice")
	}
	if ep.UpstreamTLS != nil && !tlsUp {
		l.addKey(d, "/upstream_tls", SeverityError, "upstream-tls-unused", "upstream_tls applies only to tls:// upstreams; write upstream: tls://%s", strings.TrimPrefix(ep.Pool()[0], "unix:"))
	}
	if t := ep.UpstreamTLS; t != nil && t.InsecureSkipVerify {
		l.add(d, "/upstream_tls/insecure_skip_verify", SeverityWarning, "insecure-skip-verify",
			"insecure_skip_verify: the upstream's certificate is not checked, so anyone on the path can pose as it; give certificate_authorities instead")
	}
	if h := ep.HealthCheck; h != nil {
		h.Interval, h.Timeout = l.duration(d, "/health_check/interval", h.Interval), l.duration(d, "/health_check/timeout", h.Timeout)
		if h.Type == "tls" && !tlsUp && ep.TerminateAt != TerminateUpstream {
			l.add(d, "/health_check/type", SeverityError, "health-check-plaintext",
				"health_check.type: tls needs TLS upstreams (tls://, or the TLS servers behind terminate_at: upstream); these speak plaintext: use tcp")
		}
	}
	if ep.UpstreamTLS != nil && !l.opts.SkipFiles && NeedsUpstreamFiles(ep, l.opts.Role, l.opts.Agent) {
		l.checkUpstreamFiles(ed)
	}
}

func upstreamPath(ep *Endpoint) string {
	if len(ep.Upstreams) > 0 {
		return "/upstreams/0"
	}
	return "/upstream"
}

// checkPoolEntries checks each entry of upstreams: its form, duplicates, one scheme.
func (l *loader) checkPoolEntries(ed *endpointDoc) {
	d, ep := ed.doc, ed.ep
	seen := map[string]int{}
	raw, _ := d.instance.(map[string]any)["upstreams"].([]any)
	for i, u := range ep.Upstreams {
		path := fmt.Sprintf("/upstreams/%d", i)
		s, _ := raw[i].(string)
		if p := upstreamProblem(strings.TrimPrefix(s, UpstreamTLSPrefix)); p != "" {
			l.add(d, path, SeverityError, "invalid-upstream", "upstreams entry %q is not valid: %s", s, p)
		}
		if j, dup := seen[u]; dup {
			l.add(d, path, SeverityError, "duplicate-upstream", "upstreams entry %q is entry %d already", u, j)
		}
		seen[u] = i
		if strings.HasPrefix(u, UpstreamTLSPrefix) != strings.HasPrefix(ep.Upstreams[0], UpstreamTLSPrefix) {
			l.add(d, path, SeverityError, "mixed-schemes", "every entry of a pool is tls:// or none is: %q and %q differ", ep.Upstreams[0], u)
		}
	}
}

// checkUpstreamFiles checks upstream_tls's CA files and client certificate.
func (l *loader) checkUpstreamFiles(ed *endpointDoc) {
	t := ed.ep.UpstreamTLS
	var sums [][32]byte
	for i, ca := range t.CertificateAuthorities {
		l.checkCAFile(ed.doc, fmt.Sprintf("/upstream_tls/certificate_authorities/%d", i), ca, false)
		sums = append(sums, l.refs.certificates(ca).sum)
	}
	if len(sums) > 0 {
		t.SHA256 = combinedSum(sums...)
	}
	if t.Certificate != nil {
		l.checkClientPair(ed.doc, "/upstream_tls/certificate", t.Certificate)
	}
}

// NeedsUpstreamFiles says whether role dials the endpoint's upstreams, and so needs the
// files of its upstream_tls: the agent in a split deployment, else whoever serves it.
func NeedsUpstreamFiles(ep *Endpoint, role, agent string) bool {
	switch role {
	case RoleEdge:
		return ep.Agent == ""
	case RoleAgent:
		return ep.Agent != "" && (agent == "" || ep.Agent == agent)
	}
	return true
}
