package daemon

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/server"
)

// metrics are the daemon's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	connections *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
	failures    *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	acmeOrders  *prometheus.CounterVec
	generation  prometheus.Gauge
	lastReload  prometheus.Gauge
	upstreams   *prometheus.CounterVec
	dial        *prometheus.HistogramVec
	upstreamTLS *prometheus.HistogramVec
	handshake   *prometheus.HistogramVec
	duration    *prometheus.HistogramVec
	totals      totals
}

// totals count each endpoint's connections since the process started, for /status; the
// names are those of the configuration (and "none"), so the map stays small. Counting is
// two atomic adds on the connection's end, no lock shared between listeners.
type totals struct {
	by sync.Map // endpoint name -> *endpointCounts
}

type endpointCounts struct{ connections, failed atomic.Int64 }

func (t *totals) add(endpoint string, failed bool) {
	v, ok := t.by.Load(endpoint)
	if !ok {
		v, _ = t.by.LoadOrStore(endpoint, &endpointCounts{})
	}
	c := v.(*endpointCounts)
	c.connections.Add(1)
	if failed {
		c.failed.Add(1)
	}
}

func (t *totals) of(endpoint string) admin.EndpointTotals {
	v, ok := t.by.Load(endpoint)
	if !ok {
		return admin.EndpointTotals{}
	}
	c := v.(*endpointCounts)
	return admin.EndpointTotals{Connections: c.connections.Load(), Failed: c.failed.Load()}
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{reg: admin.NewRegistry()}
	counter := func(name string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: admin.MetricHelp[name]}, labels)
		m.reg.MustRegister(c)
		return c
	}
	gauge := func(name string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: admin.MetricHelp[name]})
		m.reg.MustRegister(g)
		return g
	}
	m.connections = counter("tlsd_connections_total", "endpoint", "mode", "result", "reason")
	m.handshakes = counter("tlsd_handshakes_total", "endpoint", "result")
	m.failures = counter("tlsd_connection_failures_total", "endpoint", "reason")
	m.bytes = counter("tlsd_bytes_total", "endpoint", "direction")
	m.reloads = counter("tlsd_reloads_total", "result")
	m.acmeOrders = counter("tlsd_acme_orders_total", "issuer", "challenge", "result")
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsd_active_connections", Help: admin.MetricHelp["tlsd_active_connections"]}, []string{"endpoint"})
	m.reg.MustRegister(m.active)
	m.generation = gauge("tlsd_generation")
	m.lastReload = gauge("tlsd_last_reload_success_timestamp_seconds")
	if pool := d.opts.Tunnel; pool != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_tunnel_sessions", Help: admin.MetricHelp["tlsd_tunnel_sessions"]},
				func() float64 { return float64(len(pool.Agents())) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tlsd_tunnel_streams_total", Help: admin.MetricHelp["tlsd_tunnel_streams_total"]},
				func() float64 { return float64(pool.Streams()) }))
	}
	if p := d.opts.TunnelPKI; p != nil {
		m.reg.MustRegister(tunnelCertExpiry(p))
	}
	m.reg.MustRegister(configInfo(d.served.get))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_last_reload_successful", Help: admin.MetricHelp["tlsd_last_reload_successful"]},
		func() float64 { return boolGauge(d.lastAttemptOK()) }))
	if pool := d.opts.Tunnel; pool != nil {
		m.reg.MustRegister(&endpointAgentUp{d: d, desc: prometheus.NewDesc("tlsd_endpoint_agent_up", admin.MetricHelp["tlsd_endpoint_agent_up"], []string{"endpoint", "agent"}, nil)})
		m.reg.MustRegister(&agentCertExpiry{pool: pool, desc: prometheus.NewDesc("tlsd_tunnel_agent_certificate_expiry_timestamp_seconds",
			admin.MetricHelp["tlsd_tunnel_agent_certificate_expiry_timestamp_seconds"], []string{"agent"}, nil)})
	}
	if st := d.opts.StateStore; st != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_state_store_up", Help: admin.MetricHelp["tlsd_state_store_up"]},
			func() float64 { return boolGauge(st.Health().Up) }))
	}
	m.upstreams = counter("tlsd_upstream_connections_total", "endpoint", "upstream", "result")
	histogram := func(name string, buckets []float64) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: admin.MetricHelp[name], Buckets: buckets}, []string{"endpoint", "mode"})
		m.reg.MustRegister(h)
		return h
	}
	m.dial = histogram("tlsd_upstream_dial_duration_seconds", latencyBuckets)
	m.upstreamTLS = histogram("tlsd_upstream_tls_handshake_duration_seconds", latencyBuckets)
	m.handshake = histogram("tlsd_handshake_duration_seconds", latencyBuckets)
	m.duration = histogram("tlsd_connection_duration_seconds", lifetimeBuckets)
	m.reg.MustRegister(&upstreamUp{d: d, desc: prometheus.NewDesc("tlsd_upstream_up", admin.MetricHelp["tlsd_upstream_up"], []string{"endpoint", "upstream"}, nil)})
	m.reg.MustRegister(newCertExpiry(func() map[string]*builtRoute { return d.gen.Load().routes }))
	return m
}

func (m *metrics) routed(i *relay.Info) { m.active.WithLabelValues(i.Endpoint).Inc() }

// Buckets: latencies from 100 µs (loopback) to 5 s (a handshake timing out); lifetimes
// from a refused connection to a day-long one.
var (
	latencyBuckets  = []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}
	lifetimeBuckets = []float64{.001, .01, .1, 1, 10, 60, 300, 1800, 3600, 21600, 86400}
)

func (m *metrics) ended(i *relay.Info) {
	endpoint, mode := i.Endpoint, i.Mode
	if endpoint != "" {
		m.active.WithLabelValues(endpoint).Dec()
	} else {
		endpoint, mode = relay.ModeNone, relay.ModeNone // never routed: unknown SNI, not TLS, silent
	}
	result := "ok"
	if i.Reason != "" {
		result = "failed"
		m.failures.WithLabelValues(endpoint, i.Code).Inc()
	}
	m.connections.WithLabelValues(endpoint, mode, result, i.Code).Inc()
	m.totals.add(endpoint, i.Reason != "")
	m.duration.WithLabelValues(endpoint, mode).Observe(time.Since(i.Start).Seconds())
	if i.Handshake != "" {
		m.handshakes.WithLabelValues(endpoint, i.Handshake).Inc()
		m.handshake.WithLabelValues(endpoint, mode).Observe(i.HandshakeTime.Seconds())
	}
	m.upstreamEnded(endpoint, mode, i)
	if i.BytesIn > 0 {
		m.bytes.WithLabelValues(endpoint, "in").Add(float64(i.BytesIn))
	}
	if i.BytesOut > 0 {
		m.bytes.WithLabelValues(endpoint, "out").Add(float64(i.BytesOut))
	}
}

func (m *metrics) acmeOrder(issuer, challenge string, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.acmeOrders.WithLabelValues(issuer, challenge, result).Inc()
}

func (m *metrics) generationApplied(g *generation) {
	m.generation.Set(float64(g.n))
	m.lastReload.Set(float64(g.appliedAt.UnixNano()) / 1e9)
}

// certExpiry reports, at scrape time, the certificates of the current generation (the
// internal issuer renews its leaves on its own).
type certExpiry struct {
	routes func() map[string]*builtRoute
	desc   *prometheus.Desc
}

func newCertExpiry(routes func() map[string]*builtRoute) *certExpiry {
	return &certExpiry{routes: routes, desc: prometheus.NewDesc("tlsd_certificate_expiry_timestamp_seconds",
		admin.MetricHelp["tlsd_certificate_expiry_timestamp_seconds"], []string{"endpoint", "source"}, nil)}
}

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	for name, br := range c.routes() {
		if br.cert.leaf == nil {
			continue
		}
		if leaf := br.cert.leaf(); leaf != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), name, br.cert.kind)
		}
	}
}

// upstreamEnded counts what a connection's upstream dial did.
func (m *metrics) upstreamEnded(endpoint, mode string, i *relay.Info) {
	if i.UpstreamResult == "" {
		return // it never got as far, or an agent dialed
	}
	m.upstreams.WithLabelValues(endpoint, i.Upstream, i.UpstreamResult).Inc()
	if i.UpstreamDial > 0 {
		m.dial.WithLabelValues(endpoint, mode).Observe(i.UpstreamDial.Seconds())
	}
	if i.UpstreamTLS > 0 {
		m.upstreamTLS.WithLabelValues(endpoint, mode).Observe(i.UpstreamTLS.Seconds())
	}
}

// upstreamUp reports, at each scrape, the health of every upstream entry dialed here.
type upstreamUp struct {
	d    *Daemon
	desc *prometheus.Desc
}

func (u *upstreamUp) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

func (u *upstreamUp) Collect(ch chan<- prometheus.Metric) {
	for name, br := range u.d.gen.Load().routes {
		for _, st := range upstreamStatus(br.back) {
			v := 0.0
			if st.Up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, v, name, st.Address)
		}
	}
}

func tunnelCertExpiry(p *tunnel.PKI) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_tunnel_certificate_expiry_timestamp_seconds",
		Help: admin.MetricHelp["tlsd_tunnel_certificate_expiry_timestamp_seconds"]}, func() float64 { return float64(p.Leaf().NotAfter.Unix()) })
}

// agentCertExpiry reports, at scrape time, each connected agent's earliest client
// certificate expiry.
type agentCertExpiry struct {
	pool *server.AgentPool
	desc *prometheus.Desc
}

func (c *agentCertExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *agentCertExpiry) Collect(ch chan<- prometheus.Metric) {
	earliest := map[string]time.Time{}
	for _, a := range c.pool.Agents() {
		if t, ok := earliest[a.Name]; !ok || a.CertificateNotAfter.Before(t) {
			earliest[a.Name] = a.CertificateNotAfter
		}
	}
	for name, t := range earliest {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()), name)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// endpointAgentUp reports, at scrape time, whether each endpoint served through an agent
// has one.
type endpointAgentUp struct {
	d    *Daemon
	desc *prometheus.Desc
}

func (c *endpointAgentUp) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *endpointAgentUp) Collect(ch chan<- prometheus.Metric) {
	live := map[string]bool{}
	for _, a := range c.d.opts.Tunnel.Agents() {
		live[a.Name] = true
	}
	for name, br := range c.d.gen.Load().routes {
		if a := br.ep.Agent; a != "" {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, boolGauge(live[a]), name, a)
		}
	}
}

// configInfo is tlsd_config_info{revision,digest} 1 for the configuration served.
func configInfo(get func() *admin.ConfigStatus) prometheus.Collector {
	return &infoCollector{get: get, desc: prometheus.NewDesc("tlsd_config_info", admin.MetricHelp["tlsd_config_info"], []string{"revision", "digest"}, nil)}
}

type infoCollector struct {
	get  func() *admin.ConfigStatus
	desc *prometheus.Desc
}

func (c *infoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *infoCollector) Collect(ch chan<- prometheus.Metric) {
	if id := c.get(); id != nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, id.Revision, id.Digest)
	}
}
