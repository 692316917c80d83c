package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/upstream"
	"github.com/tlsd/tlsd/version"
)

// Agent is tlsd agent: it serves, through the tunnel streams its edge opens, the
// endpoints whose `agent` is its name, and applies configuration changes as whole
// generations like the daemon does.
type Agent struct {
	name    string
	opts    Options
	started time.Time
	log     *slog.Logger
	gen     atomic.Pointer[agentGeneration]
	Tunnel  *client.Tunnels
	// stopping is set when a shutdown begins: /readyz says 503 from then on.
	stopping atomic.Bool

	mu      sync.Mutex // serialises Apply; guards attempt, health and acme
	attempt admin.Attempt
	served  identity                    // the configuration served: digest and revision
	health  map[string]*upstream.Health // by upstream address, kept across generations
	checks  upstream.Checks             // active health checks of the generation served
	// acme orders the certificates of endpoints naming an issuer, by DNS-01 (the agent
	// may have no inbound port); orders counts them for /metrics.
	acme   accounts
	orders *prometheus.CounterVec
}

type agentGeneration struct {
	n         uint64
	config    *schema.Config
	appliedAt time.Time
	routes    map[string]*builtRoute // by endpoint name: those naming this agent
}

// NewAgent makes the agent called name.
func NewAgent(name string, opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	a := &Agent{name: name, opts: opts, log: opts.Logger, health: map[string]*upstream.Health{}, started: time.Now(),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsd_acme_orders_total", Help: admin.MetricHelp["tlsd_acme_orders_total"]},
			[]string{"issuer", "challenge", "result"})}
	a.acme.options = acmeOptions(opts, func(issuer, challenge string, ok bool) {
		a.orders.WithLabelValues(issuer, challenge, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
	})
	a.gen.Store(&agentGeneration{routes: map[string]*builtRoute{}})
	return a
}

// Close stops the agent's background work: its upstreams' active health checks and
// its certificate orders.
func (a *Agent) Close() {
	a.checks.Stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acme.stop()
}

// Generation is the number of the configuration being served.
func (a *Agent) Generation() uint64 { return a.gen.Load().n }

// Config is the configuration being served.
func (a *Agent) Config() *schema.Config { return a.gen.Load().config }

// Apply builds handlers for this agent's endpoints and switches to them; a failure
// leaves the running generation. Open streams keep the handler they started with.
func (a *Agent) Apply(cfg *schema.Config) (reconcile.Plan, error) {
	return applyIdentified(a.log, a.gen.Load().config, cfg, a.apply, a.noteRevision, &a.served, a.Generation)
}

// noteRevision records in the last attempt the revision it read.
func (a *Agent) noteRevision(rev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempt.Revision = rev
}

func (a *Agent) apply(cfg *schema.Config) (reconcile.Plan, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.gen.Load()
	plan := reconcile.Diff(cur.config, cfg)
	if cur.n > 0 && !plan.Changed() {
		a.recordLocked(true, nil, nil)
		return plan, nil
	}
	here := func(ep *schema.Endpoint) bool { return ep.Agent == a.name && ep.TerminateAt == schema.TerminateAgent }
	managers, fresh, err := a.acme.prepare(cfg, here, agentIssuer)
	var routes map[string]*builtRoute
	if err == nil {
		b := &builder{role: roleAgent, agent: a.name, opts: a.opts, log: a.log, acme: managers,
			health: func(addr string) *upstream.Health { return healthOf(a.health, addr) }}
		routes, err = b.build(cur.routes, cfg, plan, sameIssuers(a.acme.running, managers))
	}
	if err != nil {
		stopAll(fresh)
		a.recordLocked(false, nil, err)
		return plan, err
	}
	next := &agentGeneration{n: cur.n + 1, config: cfg, appliedAt: time.Now(), routes: routes}
	a.gen.Store(next)
	a.acme.commit(managers, acmeDomains(routes))
	pruneHealth(a.health, cfg)
	a.checks.Set(healthChecks(routes), func(addr string) *upstream.Health { return healthOf(a.health, addr) })
	a.recordLocked(true, nil, nil)
	a.log.Info("generation applied", "generation", next.n, "agent", a.name, "endpoints", len(next.routes))
	if len(next.routes) == 0 {
		a.log.Warn("no endpoint names this agent; every stream will be refused", "agent", a.name)
	}
	return plan, nil
}

func (a *Agent) recordLocked(ok bool, diags schema.Diagnostics, err error) {
	a.attempt = admin.NewAttempt(ok, diags, err)
}

// RecordFailedLoad notes an invalid configuration; the running generation stays.
func (a *Agent) RecordFailedLoad(diags schema.Diagnostics, err error) {
	rev := revisionOf(a.Config())
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		err = fmt.Errorf("configuration invalid: %d errors", countErrors(diags))
	}
	a.recordLocked(false, diags, err)
	a.attempt.Revision = rev
}

// Handle serves one stream from the edge: the tunnel's client calls it.
func (a *Agent) Handle(ctx context.Context, h tunnel.Header, st net.Conn) {
	var route *client.Route
	if r := a.gen.Load().routes[h.Endpoint]; r != nil {
		route = &client.Route{Mode: r.ep.TerminateAt, Timeouts: timeouts(r.ep.Timeouts), Back: r.back}
	}
	client.ServeStream(ctx, client.Stream{Agent: a.name, Header: h, Conn: st, Route: route, HandshakeTimeout: a.opts.HandshakeTimeout, Log: a.log})
}

// admin.Status reports the agent.
func (a *Agent) Status() admin.AgentStatus {
	g := a.gen.Load()
	a.mu.Lock()
	st := admin.AgentStatus{Build: version.Get(), Agent: a.name, Generation: g.n, AppliedAt: g.appliedAt, LastAttempt: a.attempt, Config: a.served.get(), Endpoints: []admin.EndpointStatus{},
		TunnelCertificate: tunnelCertStatus(a.opts.TunnelPKI)}
	a.mu.Unlock()
	if a.Tunnel != nil {
		st.Tunnel, st.Edges = a.Tunnel.Status(), a.Tunnel.Sessions()
	}
	for name, r := range g.routes {
		st.Endpoints = append(st.Endpoints, admin.EndpointStatus{Name: name, Domain: r.ep.Domain, TerminateAt: r.ep.TerminateAt,
			Upstream: r.ep.Upstream, Certificate: certificateStatus(r.cert)})
	}
	slices.SortFunc(st.Endpoints, func(x, y admin.EndpointStatus) int { return cmp.Compare(x.Name, y.Name) })
	return st
}

// CertificateReport is what the agent tells the edges that ask of the certificates it
// holds, so that theirs pages and status show them beside the endpoints.
func (a *Agent) CertificateReport() tunnel.Report {
	r := tunnel.Report{Certificates: []tunnel.ReportedCertificate{}}
	for name, br := range a.gen.Load().routes {
		if c := certificateStatus(br.cert); c != nil {
			r.Certificates = append(r.Certificates, tunnel.ReportedCertificate{Endpoint: name, NotAfter: c.NotAfter, Serial: c.Serial,
				Issuer: c.Issuer, Source: c.Source, State: c.State, Error: c.Error, Challenge: c.Challenge})
		}
	}
	slices.SortFunc(r.Certificates, func(x, y tunnel.ReportedCertificate) int { return cmp.Compare(x.Endpoint, y.Endpoint) })
	return r
}
