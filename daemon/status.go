package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/tlsd/tlsd/agent"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/statestore"
	"github.com/tlsd/tlsd/version"
)

// Attempt is the outcome of the last load-and-apply.
type Attempt struct {
	OK          bool               `json:"ok"`
	At          time.Time          `json:"at"`
	Error       string             `json:"error,omitempty"`
	Diagnostics schema.Diagnostics `json:"diagnostics"`
}

// Status is what /status reports.
type Status struct {
	Build         version.Info `json:"build"`
	StartedAt     time.Time    `json:"started_at"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	// Unrouted counts the connections no endpoint took (no or unknown SNI, not TLS,
	// silent, refused at accept), since the start.
	Unrouted    EndpointTotals   `json:"unrouted"`
	Generation  uint64           `json:"generation"`
	AppliedAt   time.Time        `json:"applied_at"`
	LastAttempt Attempt          `json:"last_attempt"`
	Endpoints   []EndpointStatus `json:"endpoints"`
	// Draining are endpoints no longer configured whose connections are still open.
	Draining []DrainingStatus `json:"draining,omitempty"`
	// Agents are the tunnel sessions of an edge.
	Agents []edge.AgentStatus `json:"agents,omitempty"`
	// StateStore is the fleet's shared store, when there is one.
	StateStore *StateStoreStatus `json:"state_store,omitempty"`
	// HTTPListen is the bound address of --http-listen, when given.
	HTTPListen string `json:"http_listen,omitempty"`
	// Tunnel is an edge's own tunnel certificate (each agent's is in Agents).
	Tunnel *CertificateStatus `json:"tunnel_certificate,omitempty"`
}

// StateStoreStatus is whether the last call to the shared state store reached it.
type StateStoreStatus struct {
	URL   string    `json:"url"` // without its password
	Up    bool      `json:"up"`
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

func storeStatus(st *statestore.Store) *StateStoreStatus {
	if st == nil {
		return nil
	}
	h := st.Health()
	return &StateStoreStatus{URL: st.Where(), Up: h.Up, Since: h.Since, Error: h.LastError}
}

// DrainingStatus is an endpoint that is gone but still has open connections.
type DrainingStatus struct {
	Name              string `json:"name"`
	ActiveConnections int    `json:"active_connections"`
}

// EndpointStatus is one endpoint of the running generation.
type EndpointStatus struct {
	Name              string `json:"name"`
	Domain            string `json:"domain"`
	Listen            string `json:"listen"` // the bound address
	TerminateAt       string `json:"terminate_at"`
	Upstream          string `json:"upstream"`
	ActiveConnections int    `json:"active_connections"`
	// Totals are the endpoint's connections since tlsd started, and how many failed.
	Totals EndpointTotals `json:"totals"`
	// DrainingConnections are those of ActiveConnections still on the endpoint's settings
	// from before its last change.
	DrainingConnections int                `json:"draining_connections,omitempty"`
	Certificate         *CertificateStatus `json:"certificate,omitempty"`
	// Agent serves the endpoint in a split deployment; AgentLive says whether the edge
	// has a session of it right now.
	Agent     string `json:"agent,omitempty"`
	AgentLive *bool  `json:"agent_live,omitempty"`
	// Limits and Timeouts are the endpoint's; LimitedConnections are the connections that
	// hold a place under its limits, every generation's together.
	// Upstreams are the entries of the endpoint's pool (one for a single upstream) where
	// this process dials them.
	Upstreams          []UpstreamStatus `json:"upstreams,omitempty"`
	Limits             *schema.Limits   `json:"limits,omitempty"`
	LimitedConnections *int             `json:"limited_connections,omitempty"`
	Timeouts           *schema.Timeouts `json:"timeouts,omitempty"`
}

// CertificateStatus describes the certificate tlsd presents for an endpoint. State and
// the fields after it are for ACME certificates: pending, valid, renewing or failed.
type CertificateStatus struct {
	NotAfter  time.Time `json:"not_after,omitzero"`
	Serial    string    `json:"serial,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	State     string    `json:"state,omitempty"`
	Error     string    `json:"error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	RenewAt   time.Time `json:"renew_at,omitzero"`
	// Challenge is the ACME challenge type that validated the certificate served (empty
	// when it was loaded from storage).
	Challenge string `json:"challenge,omitempty"`
	// Source is where it comes from: file, internal or acme ("" for a tunnel certificate).
	Source string `json:"source,omitempty"`
	// HeldBy, on an edge, is the agent that holds the certificate and reported it over
	// the tunnel (the edge itself has no copy, nor of its key).
	HeldBy string `json:"held_by,omitempty"`
}

func newAttempt(ok bool, diags schema.Diagnostics, err error) Attempt {
	a := Attempt{OK: ok, At: time.Now(), Diagnostics: diags}
	if a.Diagnostics == nil {
		a.Diagnostics = schema.Diagnostics{}
	}
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

func (d *Daemon) recordLocked(ok bool, diags schema.Diagnostics, err error) {
	d.attempt = newAttempt(ok, diags, err)
}

// RecordFailedLoad notes a configuration that could not be loaded or was invalid: the
// running generation stays, and /status and the metrics say why.
func (d *Daemon) RecordFailedLoad(diags schema.Diagnostics, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		err = fmt.Errorf("configuration invalid: %d errors", countErrors(diags))
	}
	d.recordLocked(false, diags, err)
	d.metrics.reloads.WithLabelValues("failed").Inc()
}

// connectionsLocked counts open connections per endpoint, and of those the ones
// draining: on settings no longer served, or on a listener no longer wanted.
func (d *Daemon) connectionsLocked() (active, draining map[string]int) {
	active, draining = map[string]int{}, map[string]int{}
	for _, s := range d.servers {
		a, dr := s.ActiveByEndpoint()
		addCounts(active, a)
		addCounts(draining, dr)
	}
	for s := range d.draining {
		a, _ := s.ActiveByEndpoint()
		addCounts(active, a)
		addCounts(draining, a)
	}
	return active, draining
}

func addCounts(to, from map[string]int) {
	for k, n := range from {
		to[k] += n
	}
}

func countErrors(ds schema.Diagnostics) int {
	n, _ := ds.Count()
	return n
}

// Config is the configuration being served (nil before the first).
func (d *Daemon) Config() *schema.Config { return d.gen.Load().config }

// Status reports the running generation.
func (d *Daemon) Status() Status {
	g := d.gen.Load()
	d.mu.Lock()
	st := Status{Build: version.Get(), Generation: g.n, AppliedAt: g.appliedAt, LastAttempt: d.attempt, StateStore: storeStatus(d.opts.StateStore)}
	if d.http != nil {
		st.HTTPListen = d.http.ln.Addr().String()
	}
	st.StartedAt, st.UptimeSeconds = d.started, time.Since(d.started).Round(time.Millisecond).Seconds()
	st.Tunnel = d.opts.TunnelPKI.Status()
	st.Unrouted = d.metrics.totals.of(relay.ModeNone)
	active, draining := d.connectionsLocked()
	bound := map[string]string{} // a listen of port 0 says which port it got
	for key, s := range d.servers {
		bound[key] = s.Addr().String()
	}
	d.mu.Unlock()
	for name, br := range g.routes {
		key := g.listeners[br.ep.Listen]
		es := EndpointStatus{Name: name, Domain: br.ep.Domain, Listen: cmp.Or(bound[key], key),
			TerminateAt: br.ep.TerminateAt, Upstream: br.ep.Upstream, ActiveConnections: active[name], Totals: d.metrics.totals.of(name),
			DrainingConnections: draining[name], Limits: br.ep.Limits, Timeouts: br.ep.Timeouts}
		es.Upstreams = upstreamStatus(br.back)
		if br.route != nil && br.route.Limiter != nil {
			n := br.route.Limiter.Active()
			es.LimitedConnections = &n
		}
		es.Certificate = certificateStatus(br.cert)
		st.Endpoints = append(st.Endpoints, es)
	}
	if pool := d.opts.Tunnel; pool != nil {
		st.Agents = pool.Agents()
		live := map[string]bool{}
		for _, a := range st.Agents {
			live[a.Name] = true
		}
		for i := range st.Endpoints {
			e := &st.Endpoints[i]
			if ep := g.routes[e.Name].ep; ep.Agent != "" {
				ok := live[ep.Agent]
				e.Agent, e.AgentLive = ep.Agent, &ok
				if e.Certificate == nil {
					e.Certificate = reportedCertificate(pool, ep.Agent, e.Name)
				}
			}
		}
	}
	for name, n := range active {
		if g.routes[name] == nil {
			st.Draining = append(st.Draining, DrainingStatus{Name: name, ActiveConnections: n})
		}
	}
	slices.SortFunc(st.Draining, func(a, b DrainingStatus) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Endpoints, func(a, b EndpointStatus) int { return cmp.Compare(a.Name, b.Name) })
	if st.Endpoints == nil {
		st.Endpoints = []EndpointStatus{}
	}
	return st
}

// UpstreamStatus is one upstream entry of an endpoint.
type UpstreamStatus struct {
	Address           string `json:"address"`
	ActiveConnections int64  `json:"active_connections"`
	agent.HealthStatus
}

// upstreamStatus lists the entries of the pool behind back, if it dials here.
func upstreamStatus(back relay.Handler) []UpstreamStatus {
	up := dialerOf(back)
	if up == nil {
		return nil
	}
	now := time.Now()
	out := make([]UpstreamStatus, 0, len(up.Pool.Entries))
	for _, e := range up.Pool.Entries {
		out = append(out, UpstreamStatus{Address: e.Addr, ActiveConnections: e.Active.Load(), HealthStatus: e.Health.Status(now)})
	}
	return out
}

// EndpointsOf names the endpoints of the running generation that agent serves.
func (d *Daemon) EndpointsOf(agent string) []string {
	var out []string
	for name, br := range d.gen.Load().routes {
		if br.ep.Agent == agent {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// certificateStatus is what /status says of the certificate an endpoint presents here,
// nil when it presents none.
func certificateStatus(src certSource) *CertificateStatus {
	switch {
	case src.state != nil:
		return src.state()
	case src.leaf != nil:
		if leaf := src.leaf(); leaf != nil {
			return &CertificateStatus{NotAfter: leaf.NotAfter, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.CommonName, Source: src.kind}
		}
	}
	return nil
}

func (d *Daemon) lastAttemptOK() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempt.OK || d.gen.Load().n == 0
}

// reportedCertificate is what agent said of the certificate it holds for endpoint, nil
// when it said nothing (yet).
func reportedCertificate(pool *edge.AgentPool, agent, endpoint string) *CertificateStatus {
	rc, ok := pool.Reported(agent, endpoint)
	if !ok {
		return nil
	}
	return &CertificateStatus{NotAfter: rc.NotAfter, Serial: rc.Serial, Issuer: rc.Issuer, State: rc.State, Error: rc.Error,
		Challenge: rc.Challenge, Source: rc.Source, HeldBy: agent}
}
