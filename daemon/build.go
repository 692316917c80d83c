package daemon

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/tlsd/tlsd/iprange"
	"github.com/tlsd/tlsd/tunnel/server"

	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/termination"
	"github.com/tlsd/tlsd/upstream"
)

// role is the part of the data plane a daemon runs, and so what the builder makes.
type role int

const (
	roleAll   role = iota // tlsd run: front and back in one process
	roleEdge              // tlsd edge: the front; endpoints naming an agent go through its tunnel
	roleAgent             // tlsd agent: the back of the endpoints naming this agent
)

// builtRoute is an endpoint ready to serve, with what status reports about it.
type builtRoute struct {
	ep    *schema.Endpoint
	route *edge.Route   // the front: what a listener does with it; nil at the agent
	back  relay.Handler // the back: to the upstream; nil at an edge whose agent serves it
	tls   *tls.Config   // where this process terminates, else nil
	cert  certSource    // where this process terminates: the certificate it presents
}

// builder turns schema endpoints into data-plane values. It is the one translation from
// configuration to data plane: tlsd run, tlsd edge and tlsd agent all build through it,
// so they cannot drift apart.
type builder struct {
	role       role
	agent      string // roleAgent: this agent's name
	opts       Options
	log        *slog.Logger
	internalCA func() (*localca.CA, error)
	acme       map[string]*autocert.Manager // by issuer name
	// limiter is the connection counter of an endpoint name, kept across generations;
	// health is the health of an upstream address, likewise (nil: fresh each build).
	limiter func(name string) *edge.Limiter
	health  func(addr string) *upstream.Health
	// tickets are a fleet's shared session-ticket secrets; nil: each endpoint's own keys.
	tickets termination.SharedTickets
}

// build makes the routes of cfg that this process serves. Endpoints the plan keeps keep
// their running route (and so their tls.Config and session tickets) when reusable says
// so; the others are built anew. Nothing is published: the caller switches.
func (b *builder) build(cur map[string]*builtRoute, cfg *schema.Config, plan reconcile.Plan, reusable func(*schema.Endpoint) bool) (map[string]*builtRoute, error) {
	keep := map[string]bool{}
	for _, e := range plan.Endpoints {
		keep[e.Name] = e.Action == reconcile.Keep
	}
	next := make(map[string]*builtRoute, len(cfg.Endpoints))
	for _, ep := range cfg.Endpoints {
		if b.role == roleAgent && ep.Agent != b.agent {
			continue
		}
		if old := cur[ep.Name]; old != nil && keep[ep.Name] && reusable(ep) {
			next[ep.Name] = &builtRoute{ep: ep, route: old.route, back: old.back, tls: old.tls, cert: old.cert}
			continue
		}
		br, err := b.endpoint(ep)
		if err != nil {
			return nil, err
		}
		next[ep.Name] = br
	}
	return next, nil
}

// endpoint builds one endpoint's part in this process.
func (b *builder) endpoint(ep *schema.Endpoint) (*builtRoute, error) {
	br := &builtRoute{ep: ep}
	if b.terminatesHere(ep) {
		src, err := b.certificate(ep)
		if err != nil {
			return nil, err
		}
		cfg, err := b.serverTLS(ep, src)
		if err != nil {
			return nil, err
		}
		br.tls, br.cert = cfg, src
		b.warnCostlyKey(ep, src.leaf())
	}
	if b.role != roleEdge || ep.Agent == "" {
		back, err := b.back(ep, br.tls)
		if err != nil {
			return nil, err
		}
		br.back = back
	}
	if b.role != roleAgent {
		route, err := b.front(ep, br)
		if err != nil {
			return nil, err
		}
		br.route = route
	}
	return br, nil
}

// terminatesHere: edge termination happens where the front runs, agent termination
// where the back runs; upstream termination is never tlsd's.
func (b *builder) terminatesHere(ep *schema.Endpoint) bool {
	switch ep.TerminateAt {
	case schema.TerminateEdge:
		return b.role != roleAgent
	case schema.TerminateAgent:
		return b.role != roleEdge || ep.Agent == ""
	}
	return false
}

// back dials the upstream; for agent termination it completes the handshake first.
func (b *builder) back(ep *schema.Endpoint, cfg *tls.Config) (relay.Handler, error) {
	upTLS, err := upstreamTLS(ep)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: upstream_tls: %w", ep.Name, err)
	}
	up := &upstream.Upstream{Pool: b.pool(ep), ProxyProtocol: proxyVersion(ep.UpstreamProxyProtocol), TLS: upTLS}
	switch ep.TerminateAt {
	case schema.TerminateUpstream:
		up.FirstByteTimeout = b.opts.HandshakeTimeout
	case schema.TerminateAgent:
		return &upstream.Terminator{TLS: cfg, Next: up}, nil
	}
	return up, nil
}

// upstreamTLS is the TLS client configuration of a tls:// upstream, nil for others:
// verified against the CAs given (else the system's roots), TLS 1.2 at least, with one
// session cache for the endpoint so that its connections resume.
func upstreamTLS(ep *schema.Endpoint) (*tls.Config, error) {
	if !strings.HasPrefix(ep.Pool()[0], schema.UpstreamTLSPrefix) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	t := ep.UpstreamTLS
	if t == nil {
		return cfg, nil
	}
	cfg.ServerName, cfg.InsecureSkipVerify = t.ServerName, t.InsecureSkipVerify
	if len(t.CertificateAuthorities) > 0 {
		cfg.RootCAs = x509.NewCertPool()
		if err := certs.AddFiles(cfg.RootCAs, t.CertificateAuthorities...); err != nil {
			return nil, err
		}
	}
	if f := t.Certificate; f != nil {
		pair, err := tls.LoadX509KeyPair(f.Crt, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", f.Crt, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// front is the route a listener uses: terminate at the edge or not, then the back here,
// or the tunnel to the endpoint's agent (which for agent and upstream termination gets
// the client's TLS bytes untouched: the edge holds no key for them).
func (b *builder) front(ep *schema.Endpoint, br *builtRoute) (*edge.Route, error) {
	acc, err := access(ep.IPRestriction)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: ip_restriction: %w", ep.Name, err)
	}
	r := &edge.Route{Endpoint: ep.Name, Mode: ep.TerminateAt, Domain: ep.Domain, Handler: br.back, Access: acc,
		Timeouts: timeouts(ep.Timeouts), Fallback: ep.Fallback}
	if l := ep.Limits; l != nil && b.limiter != nil {
		r.Limiter, r.Limits = b.limiter(ep.Name), edge.LimitSettings{MaxConnections: l.MaxConnections, MaxPerIP: l.MaxConnectionsPerIP}
		if l.RatePerIP != "" {
			r.Limits.Rate, r.Limits.RatePer, _ = schema.ParseRate(l.RatePerIP) // Load checked it
		}
	}
	if ep.TerminateAt == schema.TerminateEdge {
		r.TLS = br.tls
	}
	if b.role == roleEdge && ep.Agent != "" {
		r.Handler = &server.AgentForwarder{Pool: b.opts.Tunnel, Agent: ep.Agent, Endpoint: ep.Name, Plain: r.TLS != nil}
	}
	return r, nil
}

// pool is the endpoint's upstream entries, each with the health of its address.
func (b *builder) pool(ep *schema.Endpoint) *upstream.Pool {
	p := &upstream.Pool{Policy: ep.LoadBalancing}
	for _, u := range ep.Pool() {
		addr := strings.TrimPrefix(u, schema.UpstreamTLSPrefix)
		h := &upstream.Health{}
		if b.health != nil {
			h = b.health(addr)
		}
		p.Entries = append(p.Entries, &upstream.Entry{Addr: addr, Health: h})
	}
	return p
}

// timeouts are the endpoint's, with the default half_close.
func timeouts(t *schema.Timeouts) relay.Timeouts {
	out := relay.Timeouts{HalfClose: schema.DefaultHalfClose}
	if t != nil {
		out.Idle, out.MaxLifetime = schema.Duration(t.Idle), schema.Duration(t.MaxLifetime)
		if t.HalfClose != "" {
			out.HalfClose = schema.Duration(t.HalfClose)
		}
	}
	return out
}

// access is the endpoint's ip_restriction as the edge checks it: the lists in force,
// which Load checked. An entry that does not read now is an error, never a rule left out.
func access(r *schema.IPRestriction) (*edge.Access, error) {
	if r == nil {
		return nil, nil
	}
	allow, err := iprange.ParseList(r.Allow)
	if err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	deny, err := iprange.ParseList(r.Deny)
	if err != nil {
		return nil, fmt.Errorf("deny: %w", err)
	}
	return edge.NewAccess(allow, deny)
}

// serverTLS turns the endpoint's tls settings into the termination policy. The minimum
// version is configurable only at the edge; the agent's stays at TLS 1.2.
func (b *builder) serverTLS(ep *schema.Endpoint, src certSource) (*tls.Config, error) {
	p := termination.Policy{GetCertificate: src.get, Challenge: src.challenge, Now: b.opts.Now, ALPN: ep.TLS.ALPN}
	if b.tickets != nil {
		p.Tickets, p.TicketScope = b.tickets, ep.Name
	}
	if ep.TerminateAt == schema.TerminateEdge {
		p.MinVersion, p.MaxVersion = tlsVersion(ep.TLS.MinVersion), tlsVersion(ep.TLS.MaxVersion)
	}
	if m := ep.TLS.MutualTLS; m != nil {
		if err := clientPolicy(&p, m); err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", ep.Name, err)
		}
	}
	return termination.ServerConfig(p), nil
}

// tlsVersion is the crypto/tls value of "1.2" or "1.3"; zero (the default) otherwise.
func tlsVersion(v string) uint16 {
	switch v {
	case "1.2":
		return tls.VersionTLS12
	case "1.3":
		return tls.VersionTLS13
	}
	return 0
}

// clientPolicy sets the mutual TLS part of p: CAs, strategy and allow rules.
func clientPolicy(p *termination.Policy, m *schema.MutualTLS) error {
	p.MutualTLS, p.Strategy = true, m.VerificationStrategy
	if len(m.CertificateAuthorities) > 0 {
		p.ClientCAs = x509.NewCertPool()
		if err := certs.AddCAFiles(p.ClientCAs, m.CertificateAuthorities...); err != nil {
			return err
		}
	}
	if a := m.Allow; a != nil {
		p.Allow = &termination.Allow{CommonNames: a.CommonNames, DNSNames: a.DNSNames, URIs: a.URIs,
			EmailAddresses: a.EmailAddresses, OrganizationalUnits: a.OrganizationalUnits}
	}
	return nil
}

func (b *builder) certificate(ep *schema.Endpoint) (certSource, error) {
	switch {
	case ep.TLS.Certificate != nil:
		return staticCert(ep)
	case ep.TLS.Issuer == schema.InternalIssuer && b.internalCA != nil:
		ca, err := b.internalCA()
		if err != nil {
			return certSource{}, err
		}
		return internalCert(ep, ca)
	case b.acme[ep.TLS.Issuer] != nil:
		return acmeCert(b.acme[ep.TLS.Issuer], ep.Domain), nil
	}
	return certSource{}, fmt.Errorf("endpoint %s: unknown issuer %q", ep.Name, ep.TLS.Issuer)
}

// warnCostlyKey: an RSA signature costs Go several times an ECDSA P-256 one, and it
// dominates the cost of a handshake.
func (b *builder) warnCostlyKey(ep *schema.Endpoint, leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); ok {
		b.log.Warn("endpoint uses an RSA certificate; handshakes cost several times the CPU of ECDSA P-256",
			"endpoint", ep.Name, "key", certs.KeyAlgorithm(leaf))
	}
}

func proxyVersion(v string) byte {
	switch v {
	case "v1":
		return 1
	case "v2":
		return 2
	}
	return 0
}

// healthChecks are the active checks the routes ask for, where this process dials their
// upstreams: one per address (the first endpoint by name that checks it decides how).
func healthChecks(routes map[string]*builtRoute) []upstream.Check {
	var out []upstream.Check
	for _, name := range slices.Sorted(maps.Keys(routes)) {
		br := routes[name]
		h, up := br.ep.HealthCheck, dialerOf(br.back)
		if h == nil || up == nil {
			continue
		}
		for _, e := range up.Pool.Entries {
			c := upstream.Check{Addr: e.Addr, Interval: schema.Duration(h.Interval), Timeout: schema.Duration(h.Timeout),
				Handshake: h.Type == "tls", TLS: up.TLS, ServerName: strings.TrimPrefix(br.ep.Domain, "*.")}
			if up.TLS != nil {
				c.ServerName, _, _ = net.SplitHostPort(e.Addr)
			}
			out = append(out, c)
		}
	}
	return out
}

// dialerOf is the upstream handler behind back, if this process dials the upstream.
func dialerOf(back relay.Handler) *upstream.Upstream {
	if t, ok := back.(*upstream.Terminator); ok {
		back = t.Next
	}
	up, _ := back.(*upstream.Upstream)
	return up
}
