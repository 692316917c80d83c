// Package reconcile computes what must change to go from the running configuration to the
// desired one: Diff(running, desired) is a Plan of endpoint and listener changes, each
// saying what happens to live connections, with a String() that reads like `terraform
// plan` and a JSON form. It is pure: no I/O and no goroutines.
package reconcile

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/tlsd/tlsd/schema"
)

// Action is what happens to an endpoint, issuer or listener.
type Action string

const (
	Add    Action = "add"
	Remove Action = "remove"
	Change Action = "change"
	Keep   Action = "keep"
	Open   Action = "open"  // listeners
	Close  Action = "close" // listeners
)

// What happens to live connections, in words.
const (
	ConnsNew           = "new connections are accepted at once"
	ConnsUntouched     = "untouched"
	ConnsKeepOld       = "open connections keep the old settings until they end; new ones get the new"
	ConnsDrain         = "open connections drain; new ones are refused"
	ConnsListenerDrain = "stops accepting; its open connections drain"
)

// Plan is the difference between two configurations. Endpoints lists every endpoint of
// either side, unchanged ones included (Action Keep), sorted by name.
type Plan struct {
	Endpoints []EndpointChange `json:"endpoints"`
	Issuers   []IssuerChange   `json:"issuers"`
	Listeners []ListenerChange `json:"listeners"`
}

// EndpointChange is one endpoint's fate.
type EndpointChange struct {
	Name        string        `json:"name"`
	Action      Action        `json:"action"`
	Domain      string        `json:"domain"`
	Listen      string        `json:"listen"` // as configured: "" is the default listener
	Fields      []FieldChange `json:"fields,omitempty"`
	Connections string        `json:"connections"`
	// OpenConnections, when known (tlsd plan --admin), is how many connections the
	// endpoint has open now: those a change or removal sends draining.
	OpenConnections *int `json:"open_connections,omitempty"`
}

// WithOpenConnections returns the plan with the open connections of each changed or
// removed endpoint set from open (by endpoint name), as a running tlsd reports them.
func (p Plan) WithOpenConnections(open map[string]int) Plan {
	eps := slices.Clone(p.Endpoints)
	for i, e := range eps {
		if e.Action == Change || e.Action == Remove {
			n := open[e.Name]
			eps[i].OpenConnections = &n
		}
	}
	p.Endpoints = eps
	return p
}

// FieldChange is one field that differs. Old or New is empty when the field is unset.
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
}

// IssuerChange is one issuer's fate.
type IssuerChange struct {
	Name   string        `json:"name"`
	Action Action        `json:"action"`
	Fields []FieldChange `json:"fields,omitempty"`
}

// ListenerChange is one listen address's fate.
type ListenerChange struct {
	Listen      string `json:"listen"` // "" is the default listener
	Action      Action `json:"action"`
	Connections string `json:"connections"`
}

// Diff computes the plan that turns running into desired. Either may be nil (nothing).
// It compares meaning, not spelling: the configurations' Portable forms, so file paths
// count relative to their roots, whatever directory either was loaded from, and files
// by content where it was read.
func Diff(running, desired *schema.Config) Plan {
	running, desired = running.Portable(), desired.Portable()
	old, cur := endpointsByName(running), endpointsByName(desired)
	var p Plan
	for _, name := range unionKeys(old, cur) {
		p.Endpoints = append(p.Endpoints, diffEndpoint(name, old[name], cur[name]))
	}
	p.Issuers = diffIssuers(running, desired)
	p.Listeners = diffListeners(old, cur)
	return p
}

func endpointsByName(c *schema.Config) map[string]*schema.Endpoint {
	m := map[string]*schema.Endpoint{}
	if c != nil {
		for _, e := range c.Endpoints {
			m[e.Name] = e
		}
	}
	return m
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func diffEndpoint(name string, old, cur *schema.Endpoint) EndpointChange {
	switch {
	case old == nil:
		return EndpointChange{Name: name, Action: Add, Domain: cur.Domain, Listen: cur.Listen,
			Fields: endpointFields(&schema.Endpoint{}, cur), Connections: ConnsNew}
	case cur == nil:
		return EndpointChange{Name: name, Action: Remove, Domain: old.Domain, Listen: old.Listen, Connections: ConnsDrain}
	}
	fields := endpointFields(old, cur)
	if len(fields) == 0 {
		return EndpointChange{Name: name, Action: Keep, Domain: cur.Domain, Listen: cur.Listen, Connections: ConnsUntouched}
	}
	return EndpointChange{Name: name, Action: Change, Domain: cur.Domain, Listen: cur.Listen, Fields: fields, Connections: ConnsKeepOld}
}

// endpointFields lists the fields that differ, in the order of the configuration reference.
func endpointFields(a, b *schema.Endpoint) []FieldChange {
	var out []FieldChange
	add := func(field, x, y string) {
		if x != y {
			out = append(out, FieldChange{Field: field, Old: x, New: y})
		}
	}
	add("domain", a.Domain, b.Domain)
	add("listen", a.Listen, b.Listen)
	add("upstream", a.Upstream, b.Upstream)
	add("upstreams", joinList(a.Upstreams), joinList(b.Upstreams))
	add("load_balancing", a.LoadBalancing, b.LoadBalancing)
	out = append(out, upstreamFields(a, b)...)
	add("terminate_at", a.TerminateAt, b.TerminateAt)
	add("agent", a.Agent, b.Agent)
	add("upstream_proxy_protocol", a.UpstreamProxyProtocol, b.UpstreamProxyProtocol)
	ra, rb := restriction(a.IPRestriction), restriction(b.IPRestriction)
	add("ip_restriction.allow_cidrs", joinList(ra.AllowCIDRs), joinList(rb.AllowCIDRs))
	add("ip_restriction.deny_cidrs", joinList(ra.DenyCIDRs), joinList(rb.DenyCIDRs))
	add("ip_restriction.policies", joinList(ra.Policies), joinList(rb.Policies))
	// The lists in force also change when a policy an endpoint names does.
	add("ip_restriction.allow", joinList(ra.Allow), joinList(rb.Allow))
	add("ip_restriction.deny", joinList(ra.Deny), joinList(rb.Deny))
	out = append(out, limitFields(a, b)...)
	add("fallback", strconv.FormatBool(a.Fallback), strconv.FormatBool(b.Fallback))
	add("tls.min_version", a.TLS.MinVersion, b.TLS.MinVersion)
	add("tls.max_version", a.TLS.MaxVersion, b.TLS.MaxVersion)
	add("tls.alpn", joinList(a.TLS.ALPN), joinList(b.TLS.ALPN))
	ca, cb := certFiles(a.TLS.Certificate), certFiles(b.TLS.Certificate)
	add("tls.certificate.crt", ca.Crt, cb.Crt)
	add("tls.certificate.key", ca.Key, cb.Key)
	if ca.Crt == cb.Crt && ca.Key == cb.Key && ca.SHA256 != cb.SHA256 && ca.Crt != "" {
		out = append(out, FieldChange{Field: "tls.certificate", Old: "content " + short(ca.SHA256), New: "content " + short(cb.SHA256)})
	}
	add("tls.issuer", a.TLS.Issuer, b.TLS.Issuer)
	ma, mb := mutual(a.TLS.MutualTLS), mutual(b.TLS.MutualTLS)
	add("tls.mutual_tls.certificate_authorities", joinList(ma.CertificateAuthorities), joinList(mb.CertificateAuthorities))
	if slices.Equal(ma.CertificateAuthorities, mb.CertificateAuthorities) && ma.SHA256 != mb.SHA256 && len(ma.CertificateAuthorities) > 0 {
		out = append(out, FieldChange{Field: "tls.mutual_tls", Old: "content " + short(ma.SHA256), New: "content " + short(mb.SHA256)})
	}
	add("tls.mutual_tls.verification_strategy", ma.VerificationStrategy, mb.VerificationStrategy)
	return append(out, allowFields(ma.Allow, mb.Allow)...)
}

// upstreamFields lists the health_check and upstream_tls settings that differ; a file
// rewritten under the same name is a change of its content.
func upstreamFields(a, b *schema.Endpoint) []FieldChange {
	ha, hb := healthCheck(a.HealthCheck), healthCheck(b.HealthCheck)
	ta, tb := upstreamTLS(a.UpstreamTLS), upstreamTLS(b.UpstreamTLS)
	ca, cb := certFiles(ta.Certificate), certFiles(tb.Certificate)
	cas, cbs := joinList(ta.CertificateAuthorities), joinList(tb.CertificateAuthorities)
	out := fieldChanges(
		[3]string{"health_check.interval", ha.Interval, hb.Interval}, [3]string{"health_check.timeout", ha.Timeout, hb.Timeout},
		[3]string{"health_check.type", ha.Type, hb.Type}, [3]string{"upstream_tls.server_name", ta.ServerName, tb.ServerName},
		[3]string{"upstream_tls.certificate_authorities", cas, cbs},
		[3]string{"upstream_tls.certificate.crt", ca.Crt, cb.Crt}, [3]string{"upstream_tls.certificate.key", ca.Key, cb.Key},
		[3]string{"upstream_tls.insecure_skip_verify", strconv.FormatBool(ta.InsecureSkipVerify), strconv.FormatBool(tb.InsecureSkipVerify)})
	if cas == cbs && ta.SHA256 != tb.SHA256 {
		out = append(out, FieldChange{Field: "upstream_tls", Old: "content " + short(ta.SHA256), New: "content " + short(tb.SHA256)})
	}
	if ca.Crt == cb.Crt && ca.SHA256 != cb.SHA256 {
		out = append(out, FieldChange{Field: "upstream_tls.certificate", Old: "content " + short(ca.SHA256), New: "content " + short(cb.SHA256)})
	}
	return out
}

// fieldChanges lists the rows (field, old, new) whose values differ.
func fieldChanges(rows ...[3]string) []FieldChange {
	var out []FieldChange
	for _, r := range rows {
		if r[1] != r[2] {
			out = append(out, FieldChange{Field: r[0], Old: r[1], New: r[2]})
		}
	}
	return out
}

func healthCheck(h *schema.HealthCheck) schema.HealthCheck {
	if h == nil {
		return schema.HealthCheck{}
	}
	return *h
}

func upstreamTLS(t *schema.UpstreamTLS) schema.UpstreamTLS {
	if t == nil {
		return schema.UpstreamTLS{}
	}
	return *t
}

// limitFields lists the limits and timeouts that differ.
func limitFields(a, b *schema.Endpoint) []FieldChange {
	la, lb := limits(a.Limits), limits(b.Limits)
	ta, tb := timeouts(a.Timeouts), timeouts(b.Timeouts)
	return fieldChanges(
		[3]string{"limits.max_connections", count(la.MaxConnections), count(lb.MaxConnections)},
		[3]string{"limits.max_connections_per_ip", count(la.MaxConnectionsPerIP), count(lb.MaxConnectionsPerIP)},
		[3]string{"limits.rate_per_ip", la.RatePerIP, lb.RatePerIP},
		[3]string{"timeouts.idle", ta.Idle, tb.Idle}, [3]string{"timeouts.max_lifetime", ta.MaxLifetime, tb.MaxLifetime},
		[3]string{"timeouts.half_close", ta.HalfClose, tb.HalfClose})
}

func count(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func limits(l *schema.Limits) schema.Limits {
	if l == nil {
		return schema.Limits{}
	}
	return *l
}

func timeouts(t *schema.Timeouts) schema.Timeouts {
	if t == nil {
		return schema.Timeouts{}
	}
	return *t
}

// allowFields lists the mutual_tls.allow lists that differ.
func allowFields(a, b *schema.ClientAllow) []FieldChange {
	x, y := clientAllow(a), clientAllow(b)
	var out []FieldChange
	for _, f := range []struct {
		name string
		x, y []string
	}{
		{"common_names", x.CommonNames, y.CommonNames}, {"dns_names", x.DNSNames, y.DNSNames}, {"uris", x.URIs, y.URIs},
		{"email_addresses", x.EmailAddresses, y.EmailAddresses}, {"organizational_units", x.OrganizationalUnits, y.OrganizationalUnits},
	} {
		if !slices.Equal(f.x, f.y) {
			out = append(out, FieldChange{Field: "tls.mutual_tls.allow." + f.name, Old: joinList(f.x), New: joinList(f.y)})
		}
	}
	return out
}

func clientAllow(a *schema.ClientAllow) schema.ClientAllow {
	if a == nil {
		return schema.ClientAllow{}
	}
	return *a
}

func restriction(r *schema.IPRestriction) schema.IPRestriction {
	if r == nil {
		return schema.IPRestriction{}
	}
	return *r
}

func certFiles(c *schema.CertificateFiles) schema.CertificateFiles {
	if c == nil {
		return schema.CertificateFiles{}
	}
	return *c
}

func mutual(m *schema.MutualTLS) schema.MutualTLS {
	if m == nil {
		return schema.MutualTLS{}
	}
	return *m
}

func joinList(l []string) string {
	if len(l) == 0 {
		return ""
	}
	out := "[" + l[0]
	for _, s := range l[1:] {
		out += ", " + s
	}
	return out + "]"
}

// short abbreviates a content hash for humans; "" stays "unknown" (files not read).
func short(sum string) string {
	if sum == "" {
		return "unknown"
	}
	return sum[:min(12, len(sum))]
}

func diffIssuers(running, desired *schema.Config) []IssuerChange {
	byName := func(c *schema.Config) map[string]*schema.Issuer {
		m := map[string]*schema.Issuer{}
		if c != nil {
			for _, i := range c.Issuers {
				m[i.Name] = i
			}
		}
		return m
	}
	old, cur := byName(running), byName(desired)
	var out []IssuerChange
	for _, name := range unionKeys(old, cur) {
		a, b := old[name], cur[name]
		switch {
		case a == nil:
			out = append(out, IssuerChange{Name: name, Action: Add})
		case b == nil:
			out = append(out, IssuerChange{Name: name, Action: Remove})
		default:
			var f []FieldChange
			if a.ACME.Directory != b.ACME.Directory {
				f = append(f, FieldChange{"acme.directory", a.ACME.Directory, b.ACME.Directory})
			}
			if a.ACME.Email != b.ACME.Email {
				f = append(f, FieldChange{"acme.email", a.ACME.Email, b.ACME.Email})
			}
			if !slices.Equal(a.ACME.CARoots, b.ACME.CARoots) {
				f = append(f, FieldChange{"acme.ca_roots", joinList(a.ACME.CARoots), joinList(b.ACME.CARoots)})
			}
			f = append(f, challengeFields(a.ACME, b.ACME)...)
			action := Keep
			if len(f) > 0 {
				action = Change
			}
			out = append(out, IssuerChange{Name: name, Action: action, Fields: f})
		}
	}
	return out
}

func diffListeners(old, cur map[string]*schema.Endpoint) []ListenerChange {
	listens := func(m map[string]*schema.Endpoint) map[string]bool {
		out := map[string]bool{}
		for _, e := range m {
			out[e.Listen] = true
		}
		return out
	}
	a, b := listens(old), listens(cur)
	var out []ListenerChange
	for _, l := range unionKeys(a, b) {
		switch {
		case !a[l]:
			out = append(out, ListenerChange{Listen: l, Action: Open, Connections: ConnsNew})
		case !b[l]:
			out = append(out, ListenerChange{Listen: l, Action: Close, Connections: ConnsListenerDrain})
		default:
			out = append(out, ListenerChange{Listen: l, Action: Keep, Connections: ConnsUntouched})
		}
	}
	slices.SortStableFunc(out, func(x, y ListenerChange) int { return cmp.Compare(x.Listen, y.Listen) })
	return out
}

// Changed reports whether applying the plan changes anything.
func (p Plan) Changed() bool {
	for _, e := range p.Endpoints {
		if e.Action != Keep {
			return true
		}
	}
	for _, i := range p.Issuers {
		if i.Action != Keep {
			return true
		}
	}
	for _, l := range p.Listeners {
		if l.Action != Keep {
			return true
		}
	}
	return false
}

// challengeFields lists the challenge settings of two issuers that differ. A secret
// file's content is not compared: a secret rotated in place takes effect when its
// issuer next changes, or on restart.
func challengeFields(a, b schema.ACME) []FieldChange {
	ea, eb := externalAccount(a.ExternalAccount), externalAccount(b.ExternalAccount)
	da, db := dnsProvider(a.DNS), dnsProvider(b.DNS)
	ra, rb := rfc2136(da.RFC2136), rfc2136(db.RFC2136)
	return fieldChanges(
		[3]string{"acme.challenges", joinList(a.Challenges), joinList(b.Challenges)},
		[3]string{"acme.external_account.key_id", ea.KeyID, eb.KeyID},
		[3]string{"acme.external_account.mac_key_file", ea.MACKeyFile, eb.MACKeyFile},
		[3]string{"acme.dns.rfc2136.server", ra.Server, rb.Server},
		[3]string{"acme.dns.rfc2136.tsig_key_name", ra.TSIGKeyName, rb.TSIGKeyName},
		[3]string{"acme.dns.rfc2136.tsig_algorithm", ra.TSIGAlgorithm, rb.TSIGAlgorithm},
		[3]string{"acme.dns.rfc2136.tsig_secret_file", ra.TSIGSecretFile, rb.TSIGSecretFile},
		[3]string{"acme.dns.exec", joinList(da.Exec), joinList(db.Exec)},
		[3]string{"acme.propagation_timeout", a.PropagationTimeout, b.PropagationTimeout})
}

func externalAccount(e *schema.ExternalAccount) schema.ExternalAccount {
	if e == nil {
		return schema.ExternalAccount{}
	}
	return *e
}

func dnsProvider(p *schema.DNSProvider) schema.DNSProvider {
	if p == nil {
		return schema.DNSProvider{}
	}
	return *p
}

func rfc2136(r *schema.RFC2136) schema.RFC2136 {
	if r == nil {
		return schema.RFC2136{}
	}
	return *r
}
