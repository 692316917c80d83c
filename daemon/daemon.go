package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/statestore"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/server"
	"github.com/tlsd/tlsd/upstream"
)

// Options configure a Daemon.
type Options struct {
	Listen           string // the listener of endpoints that name none
	StateDir         string // the local CA and other state
	HandshakeTimeout time.Duration
	// DrainTimeout bounds how long connections of removed or changed endpoints, and of
	// closed listeners, may continue after a reload. Zero means until they end.
	DrainTimeout time.Duration
	// ACMERetryBase is the first wait after a failed ACME order; it doubles up to
	// six hours. Zero means a minute.
	ACMERetryBase time.Duration
	// Tunnel, when set, makes this daemon an edge: endpoints naming an agent are served
	// through that agent's tunnel sessions.
	Tunnel *server.AgentPool
	Logger *slog.Logger
	// Now is the clock session ticket keys age by; nil means time.Now.
	Now func() time.Time
	// MaxHandshakes bounds the connections in their handshake phase at once, across
	// listeners each; zero means DefaultMaxHandshakes, negative no bound.
	MaxHandshakes int
	// MaxConnections bounds the connections of every listener together; zero means none.
	MaxConnections int
	// ProxyProtocolFrom are the load balancers whose connections begin with a PROXY
	// header naming the client; the header's address is then the client's everywhere.
	ProxyProtocolFrom []netip.Prefix
	// StateStore, when set, is the fleet's shared state: ACME accounts, certificates,
	// challenge answers and locks, the internal CA, and session-ticket secrets live in
	// it instead of StateDir, so N edges order once and resume each other's tickets.
	StateStore *statestore.Store
	// StorePoll is how often certificates in the state store are checked for renewals
	// made by another edge; zero means 30 s.
	StorePoll time.Duration
	// HTTPListen, when set, is tlsd's HTTP listener: it answers ACME HTTP-01 validations
	// and redirects every other request to https://.
	HTTPListen string
	// TunnelPKI, when set, is this process's tunnel certificate (edge or agent), read
	// again on every reload and reported in /status and /metrics.
	TunnelPKI *tunnel.PKI
	// Bind opens the listener of an address a generation needs; nil means edge.Listen.
	// It lets the caller hand over sockets it already holds (tests pass :0 listeners).
	Bind func(ctx context.Context, addr string) (net.Listener, error)
}

// DefaultMaxHandshakes bounds the connections of one listener in their handshake phase:
// far above what a healthy listener has in flight (a handshake takes milliseconds), low
// enough that slow or silent clients cannot pin unbounded memory.
const DefaultMaxHandshakes = 4096

// generation is one applied configuration. It is never modified once published.
type generation struct {
	n         uint64
	config    *schema.Config
	appliedAt time.Time
	routes    map[string]*builtRoute // by endpoint name
	listeners map[string]string      // configured listen ("" = default) -> bound address key
	acme      map[string]*autocert.Manager
}

// Daemon serves a configuration and applies new ones as whole generations: everything is
// built and every new listener bound before anything is switched, and a failure leaves
// the running generation as it was.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	hellos  *edge.HelloBudget // shared by every listener
	proxies *edge.ProxySources
	conns   *edge.ConnectionBudget // --max-connections, nil for none
	// limiters count each endpoint name's connections across generations; guarded by mu.
	limiters map[string]*edge.Limiter
	// health is each upstream address's health, kept across generations; guarded by mu.
	health map[string]*upstream.Health
	checks upstream.Checks // active health checks of the generation being served
	// tickets are the fleet's session-ticket secrets, nil without a state store.
	tickets *statestore.Tickets
	gen     atomic.Pointer[generation]
	// stopping is set the moment a shutdown begins: /readyz turns 503 at once, so a load
	// balancer stops sending before the listeners close.
	stopping atomic.Bool
	started  time.Time
	ctx      context.Context // ends background work at Shutdown
	cancel   context.CancelFunc
	bg       sync.WaitGroup // background goroutines: serving, draining

	mu       sync.Mutex // serialises Apply and Shutdown; guards the following fields
	servers  map[string]*edge.Server
	draining map[*edge.Server]struct{}
	ca       *localca.CA
	acme     accounts
	http     *edge.HTTPFront // --http-listen, nil without
	attempt  admin.Attempt
	served   identity // the configuration served: digest and revision
	closed   bool
}

// New makes a daemon serving nothing; Apply gives it a configuration. Options that
// cannot be used (a --proxy-protocol-from prefix that is not valid) are an error.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.Bind == nil {
		opts.Bind = edge.Listen
	}
	if opts.MaxHandshakes == 0 {
		opts.MaxHandshakes = DefaultMaxHandshakes
	}
	proxies, err := edge.NewProxySources(opts.ProxyProtocolFrom)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{proxies: proxies, opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, started: time.Now(), hellos: edge.NewHelloBudget(edge.DefaultHelloBudget),
		limiters: map[string]*edge.Limiter{}, health: map[string]*upstream.Health{},
		servers: map[string]*edge.Server{}, draining: map[*edge.Server]struct{}{}}
	if opts.MaxConnections > 0 {
		d.conns = edge.NewConnectionBudget(opts.MaxConnections)
	}
	d.startTickets()
	d.metrics = newMetrics(d)
	d.acme.options = acmeOptions(opts, d.metrics.acmeOrder)
	d.gen.Store(&generation{routes: map[string]*builtRoute{}, listeners: map[string]string{}})
	if len(opts.ProxyProtocolFrom) > 0 {
		d.log.Info("connections from these sources must begin with a PROXY protocol header naming the client", "proxy_protocol_from", opts.ProxyProtocolFrom)
	}
	return d, nil
}

// Start is New followed by a first Apply that must succeed.
func Start(cfg *schema.Config, opts Options) (*Daemon, error) {
	d, err := New(opts)
	if err != nil {
		return nil, err
	}
	if _, err := d.Apply(cfg); err != nil {
		d.Shutdown(context.Background())
		return nil, err
	}
	return d, nil
}

// Generation is the number of the configuration being served (0 before the first).
func (d *Daemon) Generation() uint64 { return d.gen.Load().n }

// listeners are the daemon's listening sockets by bound-address key, for a hand-over.
func (d *Daemon) listeners() map[string]net.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]net.Listener, len(d.servers))
	for addr, s := range d.servers {
		out[addr] = s.Listener()
	}
	if d.http != nil {
		out[d.http.Addr] = d.http.Listener()
	}
	return out
}

// Addr returns the bound address of the listener configured as listen ("" is the
// default listener), or nil.
func (d *Daemon) Addr(listen string) net.Addr {
	key, ok := d.gen.Load().listeners[listen]
	if !ok {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.servers[key]; s != nil {
		return s.Addr()
	}
	return nil
}

// Apply makes cfg the served configuration and returns what changed. An unchanged
// configuration is a no-op: the generation stays. On error nothing changed.
func (d *Daemon) Apply(cfg *schema.Config) (reconcile.Plan, error) {
	return applyIdentified(d.log, d.gen.Load().config, cfg, d.apply, d.noteRevision, &d.served, d.Generation)
}

// noteRevision records in the last attempt the revision it read.
func (d *Daemon) noteRevision(rev string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempt.Revision = rev
}

func (d *Daemon) apply(cfg *schema.Config) (reconcile.Plan, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return reconcile.Plan{}, errors.New("apply: the daemon is shutting down")
	}
	cur := d.gen.Load()
	plan := reconcile.Diff(cur.config, cfg)
	if cur.n > 0 && !plan.Changed() {
		d.recordLocked(true, nil, nil)
		d.metrics.reloads.WithLabelValues("unchanged").Inc()
		return plan, nil
	}
	managers, fresh, err := d.acme.prepare(cfg, d.builder(nil).terminatesHere, d.daemonIssuer(cfg))
	var next *generation
	if err == nil {
		next, err = d.buildLocked(cur, cfg, plan, managers)
	}
	if err == nil {
		err = d.switchLocked(next, plan)
	}
	if err != nil {
		stopAll(fresh)
		d.recordLocked(false, nil, err)
		d.metrics.reloads.WithLabelValues("failed").Inc()
		return plan, err
	}
	for name := range d.limiters {
		if next.routes[name] == nil {
			delete(d.limiters, name)
		}
	}
	pruneHealth(d.health, next.config)
	d.checks.Set(healthChecks(next.routes), func(addr string) *upstream.Health { return healthOf(d.health, addr) })
	d.recordLocked(true, nil, nil)
	d.metrics.reloads.WithLabelValues("applied").Inc()
	return plan, nil
}

// buildLocked prepares generation N+1: unchanged endpoints keep their route (and so
// their tls.Config and session tickets); the others are built anew.
func (d *Daemon) buildLocked(cur *generation, cfg *schema.Config, plan reconcile.Plan, managers map[string]*autocert.Manager) (*generation, error) {
	b := d.builder(managers)
	routes, err := b.build(cur.routes, cfg, plan, sameIssuers(d.acme.running, managers))
	if err != nil {
		return nil, err
	}
	next := &generation{n: cur.n + 1, config: cfg, appliedAt: time.Now(), routes: routes, listeners: map[string]string{}, acme: managers}
	for _, ep := range cfg.Endpoints {
		next.listeners[ep.Listen] = d.listenAddr(ep.Listen)
	}
	return next, nil
}

// builder builds this daemon's part of endpoints: all of them for tlsd run, the front
// for tlsd edge.
func (d *Daemon) builder(managers map[string]*autocert.Manager) *builder {
	b := &builder{role: roleAll, opts: d.opts, log: d.log, internalCA: d.internalCALocked, acme: managers, limiter: d.limiterLocked,
		health: func(addr string) *upstream.Health { return healthOf(d.health, addr) }}
	if d.opts.Tunnel != nil {
		b.role = roleEdge
	}
	if d.tickets != nil {
		b.tickets = d.tickets
	}
	return b
}

func (d *Daemon) listenAddr(listen string) string {
	if listen == "" {
		return d.opts.Listen
	}
	return listen
}

// healthOf is the health of addr in m, made on first use.
func healthOf(m map[string]*upstream.Health, addr string) *upstream.Health {
	h := m[addr]
	if h == nil {
		h = &upstream.Health{}
		m[addr] = h
	}
	return h
}

// pruneHealth forgets the addresses cfg no longer names.
func pruneHealth(m map[string]*upstream.Health, cfg *schema.Config) {
	used := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		for _, u := range ep.Pool() {
			used[strings.TrimPrefix(u, schema.UpstreamTLSPrefix)] = true
		}
	}
	for addr := range m {
		if !used[addr] {
			delete(m, addr)
		}
	}
}

// limiterLocked is the connection counter of an endpoint name. Counters of names no
// longer configured are left to the connections that still hold them.
func (d *Daemon) limiterLocked(name string) *edge.Limiter {
	l := d.limiters[name]
	if l == nil {
		l = edge.NewLimiter()
		d.limiters[name] = l
	}
	return l
}

func (d *Daemon) internalCALocked() (*localca.CA, error) {
	if d.ca != nil {
		return d.ca, nil
	}
	if st := d.opts.StateStore; st != nil {
		ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
		defer cancel()
		ca, err := localca.OpenShared(ctx, st, nil)
		if err != nil {
			return nil, err
		}
		d.log.Info("internal issuer ready, shared by the fleet: clients must trust its root (tlsd ca --state-store prints it)", "store", st.Where())
		d.ca = ca
		return ca, nil
	}
	ca, err := localca.Open(d.opts.StateDir, nil)
	if err != nil {
		return nil, err
	}
	if ca.Recovered != "" {
		d.log.Warn("internal issuer: " + ca.Recovered)
	}
	d.log.Info("internal issuer ready: clients must trust its root (tlsd ca prints it)", "root", localca.RootFile(d.opts.StateDir))
	d.ca = ca
	return ca, nil
}

// startTickets reads the fleet's ticket secrets once (so the first generation seals with
// them) and keeps them synced and rotated in the background.
func (d *Daemon) startTickets() {
	if d.opts.StateStore == nil {
		return
	}
	d.tickets = d.opts.StateStore.Tickets(d.opts.Now, 0)
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	if err := d.tickets.Sync(ctx); err != nil {
		d.log.Warn("session ticket secrets not read from the state store yet; this edge seals its own until they are", "error", err)
	}
	cancel()
	d.bg.Add(1)
	go func() { defer d.bg.Done(); d.tickets.Run(d.ctx) }()
}

// switchLocked binds the new listeners, then publishes every table at once. A listener
// that cannot be bound discards the whole generation.
func (d *Daemon) switchLocked(next *generation, plan reconcile.Plan) error {
	tables, err := tablesFor(next)
	if err != nil {
		return err
	}
	addrs := map[string]bool{}
	for addr := range tables {
		addrs[addr] = true
	}
	httpLn, err := d.bindHTTPLocked(addrs)
	if err != nil {
		return err
	}
	fresh := map[string]net.Listener{}
	for _, addr := range slices.Sorted(maps.Keys(tables)) {
		if d.servers[addr] != nil {
			continue
		}
		ln, err := d.opts.Bind(d.ctx, addr)
		if err != nil {
			closeIf(httpLn)
			for _, l := range fresh {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		fresh[addr] = ln
	}
	// Nothing can fail from here on: the commit.
	for addr, t := range tables {
		if s := d.servers[addr]; s != nil {
			s.SetTable(t)
		}
	}
	for addr, ln := range fresh {
		d.serveLocked(addr, ln, tables[addr])
	}
	if httpLn != nil {
		f := edge.NewHTTPFront(d.opts.HTTPListen, httpLn, d.opts.HandshakeTimeout, d.log)
		d.http = f
		d.bg.Add(1)
		go func() { defer d.bg.Done(); f.Serve() }()
	}
	for addr, s := range d.servers {
		if tables[addr] == nil {
			delete(d.servers, addr)
			d.drainLocked(s)
			d.log.Info("listener closed; its open connections drain", "address", addr)
		}
	}
	d.gen.Store(next)
	d.acme.commit(next.acme, acmeDomains(next.routes))
	if d.http != nil {
		d.http.Set(d.httpRoutesLocked(next))
	}
	d.metrics.generationApplied(next)
	d.logApplied(next, plan)
	return nil
}

// tablesFor builds a route table per bound address.
func tablesFor(g *generation) (map[string]*edge.Table, error) {
	byAddr := map[string][]*edge.Route{}
	for _, br := range g.routes {
		addr := g.listeners[br.ep.Listen]
		byAddr[addr] = append(byAddr[addr], br.route)
	}
	tables := map[string]*edge.Table{}
	for addr, routes := range byAddr {
		t, err := edge.NewTable(routes)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", addr, err)
		}
		tables[addr] = t
	}
	return tables, nil
}

func (d *Daemon) serveLocked(addr string, ln net.Listener, t *edge.Table) {
	s := edge.NewServer(ln, t, edge.Config{HandshakeTimeout: d.opts.HandshakeTimeout, Logger: d.log,
		OnRouted: d.metrics.routed, OnEnd: d.metrics.ended, DrainTimeout: d.opts.DrainTimeout,
		MaxHandshakes: max(d.opts.MaxHandshakes, 0), HelloBudget: d.hellos, ProxySources: d.proxies, Connections: d.conns})
	d.servers[addr] = s
	d.bg.Add(1)
	go func() { defer d.bg.Done(); s.Serve() }()
	d.log.Info("listening", "address", ln.Addr().String(), "routes", t.Len())
}

// drainLocked stops s accepting and lets its connections finish (bounded by DrainTimeout).
func (d *Daemon) drainLocked(s *edge.Server) {
	s.Close()
	d.draining[s] = struct{}{}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		ctx, cancel := d.drainContext()
		defer cancel()
		if cut, _ := s.Shutdown(ctx); cut > 0 {
			d.log.Warn("drain timeout: closed connections of a closed listener", "address", s.Addr().String(), "closed", cut)
		}
		d.mu.Lock()
		delete(d.draining, s)
		d.mu.Unlock()
	}()
}

func (d *Daemon) drainContext() (context.Context, context.CancelFunc) {
	if d.opts.DrainTimeout > 0 {
		return context.WithTimeout(d.ctx, d.opts.DrainTimeout)
	}
	return context.WithCancel(d.ctx)
}

func (d *Daemon) logApplied(next *generation, p reconcile.Plan) {
	var add, change, remove int
	for _, e := range p.Endpoints {
		switch e.Action {
		case reconcile.Add:
			add++
		case reconcile.Change:
			change++
		case reconcile.Remove:
			remove++
		}
		if e.Action != reconcile.Keep {
			d.log.Info("endpoint "+string(e.Action), "generation", next.n, "name", e.Name, "domain", e.Domain, "fields", fieldNames(e.Fields))
		}
	}
	d.log.Info("generation applied", "generation", next.n, "endpoints", len(next.routes), "added", add, "changed", change, "removed", remove)
}

func fieldNames(fs []reconcile.FieldChange) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Field
	}
	return out
}

// Shutdown stops accepting everywhere at once and waits for open connections to finish;
// when ctx ends first it cuts the rest and says how many.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopping.Store(true)
	d.mu.Lock()
	d.closed = true
	all := make([]*edge.Server, 0, len(d.servers)+len(d.draining))
	for _, s := range d.servers {
		all = append(all, s)
	}
	for s := range d.draining {
		all = append(all, s)
	}
	front := d.http
	d.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
	var cut int
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); front.Shutdown(ctx) }()
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := s.Shutdown(ctx)
			mu.Lock()
			cut += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	d.mu.Lock()
	d.acme.stop()
	d.mu.Unlock()
	d.checks.Stop()
	d.cancel()
	d.bg.Wait()
	if cut > 0 {
		return fmt.Errorf("shutdown timeout: closed %d open connections", cut)
	}
	return nil
}
