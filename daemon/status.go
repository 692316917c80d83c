package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/statestore"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/server"
	"github.com/tlsd/tlsd/version"
)

func storeStatus(st *statestore.Store) *admin.StateStoreStatus {
	if st == nil {
		return nil
	}
	h := st.Health()
	return &admin.StateStoreStatus{URL: st.Where(), Up: h.Up, Since: h.Since, Error: h.LastError}
}

func (d *Daemon) recordLocked(ok bool, diags schema.Diagnostics, err error) {
	d.attempt = admin.NewAttempt(ok, diags, err)
}

// RecordFailedLoad notes a configuration that could not be loaded or was invalid: the
// running generation stays, and /status and the metrics say why.
func (d *Daemon) RecordFailedLoad(diags schema.Diagnostics, err error) {
	rev := revisionOf(d.Config())
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		err = fmt.Errorf("configuration invalid: %d errors", countErrors(diags))
	}
	d.recordLocked(false, diags, err)
	d.attempt.Revision = rev
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

// admin.Status reports the running generation.
func (d *Daemon) Status() admin.Status {
	g := d.gen.Load()
	d.mu.Lock()
	st := admin.Status{Build: version.Get(), Generation: g.n, AppliedAt: g.appliedAt, LastAttempt: d.attempt, StateStore: storeStatus(d.opts.StateStore),
		Config: d.served.get()}
	if d.http != nil {
		st.HTTPListen = d.http.Listener().Addr().String()
	}
	st.StartedAt, st.UptimeSeconds = d.started, time.Since(d.started).Round(time.Millisecond).Seconds()
	st.Tunnel = tunnelCertStatus(d.opts.TunnelPKI)
	st.Unrouted = d.metrics.totals.of(relay.ModeNone)
	active, draining := d.connectionsLocked()
	bound := map[string]string{} // a listen of port 0 says which port it got
	for key, s := range d.servers {
		bound[key] = s.Addr().String()
	}
	d.mu.Unlock()
	for name, br := range g.routes {
		key := g.listeners[br.ep.Listen]
		es := admin.EndpointStatus{Name: name, Domain: br.ep.Domain, Listen: cmp.Or(bound[key], key),
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
			st.Draining = append(st.Draining, admin.DrainingStatus{Name: name, ActiveConnections: n})
		}
	}
	slices.SortFunc(st.Draining, func(a, b admin.DrainingStatus) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Endpoints, func(a, b admin.EndpointStatus) int { return cmp.Compare(a.Name, b.Name) })
	if st.Endpoints == nil {
		st.Endpoints = []admin.EndpointStatus{}
	}
	return st
}

// upstreamStatus lists the entries of the pool behind back, if it dials here.
func upstreamStatus(back relay.Handler) []admin.UpstreamStatus {
	up := dialerOf(back)
	if up == nil {
		return nil
	}
	now := time.Now()
	out := make([]admin.UpstreamStatus, 0, len(up.Pool.Entries))
	for _, e := range up.Pool.Entries {
		out = append(out, admin.UpstreamStatus{Address: e.Addr, ActiveConnections: e.Active.Load(), HealthStatus: e.Health.Status(now)})
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
func certificateStatus(src certSource) *admin.CertificateStatus {
	switch {
	case src.state != nil:
		return src.state()
	case src.leaf != nil:
		if leaf := src.leaf(); leaf != nil {
			return &admin.CertificateStatus{NotAfter: leaf.NotAfter, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.CommonName, Source: src.kind}
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
func reportedCertificate(pool *server.AgentPool, agent, endpoint string) *admin.CertificateStatus {
	rc, ok := pool.Reported(agent, endpoint)
	if !ok {
		return nil
	}
	return &admin.CertificateStatus{NotAfter: rc.NotAfter, Serial: rc.Serial, Issuer: rc.Issuer, State: rc.State, Error: rc.Error,
		Challenge: rc.Challenge, Source: rc.Source, HeldBy: agent}
}

// AdminHandler serves the daemon's admin API (see admin.Handler).
func (d *Daemon) AdminHandler() http.Handler {
	title := "tlsd run"
	if d.opts.Tunnel != nil {
		title = "tlsd edge"
	}
	return admin.Handler(admin.View{
		Page:    func() admin.Page { return admin.DaemonPage(d.Status(), title) },
		Ready:   d.ready,
		Status:  func() any { return d.Status() },
		Config:  func() any { return d.Config().Portable() },
		Metrics: d.metrics.reg,
	})
}

// ready is nil once a generation serves, until a shutdown begins.
func (d *Daemon) ready() error {
	switch {
	case d.stopping.Load():
		return errors.New("shutting down")
	case d.Generation() == 0:
		return errors.New("no configuration applied yet")
	}
	return nil
}

// tunnelCertStatus is p's certificate for /status, nil without a tunnel.
func tunnelCertStatus(p *tunnel.PKI) *admin.CertificateStatus {
	if p == nil {
		return nil
	}
	leaf := p.Leaf()
	return &admin.CertificateStatus{NotAfter: leaf.NotAfter, Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.CommonName, Error: p.LastError()}
}
