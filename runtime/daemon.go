package runtime

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tlsd/tlsd/agent"
	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/internal/localca"
	"github.com/tlsd/tlsd/schema"
)

// Options configure a Daemon.
type Options struct {
	Listen           string // the listener of endpoints that name none
	StateDir         string // the local CA and other state
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// Daemon serves one configuration: a listener per address, each routing by SNI.
type Daemon struct {
	log     *slog.Logger
	listen  string                  // the default listener's configured address
	servers map[string]*edge.Server // by listen address as configured
	tickets *ticketKeys
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Start builds everything cfg needs — certificates loaded, TLS configs built, every
// listener bound — and only then starts serving. Any failure releases what was built.
func Start(cfg *schema.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	b := &builder{opts: opts, tickets: newTicketKeys()}
	tables, err := b.routes(cfg)
	if err != nil {
		return nil, err
	}
	listeners, err := bindAll(tables)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{log: opts.Logger, listen: opts.Listen, servers: map[string]*edge.Server{}, tickets: b.tickets, cancel: cancel}
	for addr, ln := range listeners {
		s := edge.NewServer(ln, tables[addr], edge.Config{HandshakeTimeout: opts.HandshakeTimeout, Logger: opts.Logger})
		d.servers[addr] = s
		d.wg.Add(1)
		go func() { defer d.wg.Done(); s.Serve() }()
		d.log.Info("listening", "address", ln.Addr().String(), "routes", tables[addr].Len())
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.tickets.run(ctx, ticketRotation) }()
	return d, nil
}

// Addr returns the bound address of the listener configured as listen ("" is the
// default listener), or nil.
func (d *Daemon) Addr(listen string) net.Addr {
	if listen == "" {
		listen = d.listen
	}
	if s := d.servers[listen]; s != nil {
		return s.Addr()
	}
	return nil
}

// Shutdown stops accepting at once and waits for open connections to finish; when ctx
// ends first it cuts the rest and says how many.
func (d *Daemon) Shutdown(ctx context.Context) error {
	var cut int
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range d.servers {
		s.Close()
	}
	for _, s := range d.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Shutdown(ctx)
			mu.Lock()
			cut += n
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	d.cancel()
	d.wg.Wait()
	if cut > 0 {
		return fmt.Errorf("shutdown timeout: closed %d open connections: %w", cut, errors.Join(errs...))
	}
	return nil
}

// Run serves cfg until ctx ends, then drains for at most shutdownTimeout.
func Run(ctx context.Context, cfg *schema.Config, opts Options, shutdownTimeout time.Duration) error {
	d, err := Start(cfg, opts)
	if err != nil {
		return err
	}
	<-ctx.Done()
	d.log.Info("shutting down: no new connections; waiting for open ones", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		return err
	}
	d.log.Info("stopped: every connection finished")
	return nil
}

// builder turns endpoints into route tables.
type builder struct {
	opts    Options
	tickets *ticketKeys
	ca      *localca.CA
}

func (b *builder) internalCA() (*localca.CA, error) {
	if b.ca == nil {
		ca, err := localca.Open(b.opts.StateDir, nil)
		if err != nil {
			return nil, err
		}
		b.log().Info("internal issuer ready: clients must trust its root (tlsd ca prints it)", "root", localca.RootFile(b.opts.StateDir))
		b.ca = ca
	}
	return b.ca, nil
}

func (b *builder) log() *slog.Logger { return b.opts.Logger }

// routes builds a route table per listen address.
func (b *builder) routes(cfg *schema.Config) (map[string]*edge.Table, error) {
	byListen := map[string][]*edge.Route{}
	for _, ep := range cfg.Endpoints {
		r, err := b.route(ep)
		if err != nil {
			return nil, err
		}
		listen := ep.Listen
		if listen == "" {
			listen = b.opts.Listen
		}
		byListen[listen] = append(byListen[listen], r)
		b.log().Info("endpoint", "name", ep.Name, "domain", ep.Domain, "terminate_at", ep.TerminateAt, "listen", listen, "upstream", ep.Upstream)
	}
	tables := map[string]*edge.Table{}
	for listen, routes := range byListen {
		t, err := edge.NewTable(routes)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", listen, err)
		}
		tables[listen] = t
	}
	return tables, nil
}

func (b *builder) route(ep *schema.Endpoint) (*edge.Route, error) {
	up := &agent.Upstream{Addr: ep.Upstream, ProxyProtocol: proxyVersion(ep.UpstreamProxyProtocol)}
	r := &edge.Route{Endpoint: ep.Name, Mode: ep.TerminateAt, Domain: ep.Domain, Handler: up}
	if ep.TerminateAt == schema.TerminateUpstream {
		up.FirstByteTimeout = b.opts.HandshakeTimeout
		return r, nil
	}
	cfg, leaf, err := serverTLSConfig(ep, b.internalCA)
	if err != nil {
		return nil, err
	}
	b.tickets.add(cfg)
	b.warnCostlyKey(ep, leaf)
	if ep.TerminateAt == schema.TerminateEdge {
		r.TLS = cfg
	} else {
		r.Handler = &agent.Terminator{TLS: cfg, Next: up}
	}
	return r, nil
}

// warnCostlyKey: an RSA signature costs Go several times an ECDSA P-256 one, and it
// dominates the cost of a handshake.
func (b *builder) warnCostlyKey(ep *schema.Endpoint, leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); ok {
		b.log().Warn("endpoint uses an RSA certificate; handshakes cost several times the CPU of ECDSA P-256",
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

// bindAll binds every listener or none.
func bindAll(tables map[string]*edge.Table) (map[string]net.Listener, error) {
	addrs := make([]string, 0, len(tables))
	for a := range tables {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	out := map[string]net.Listener{}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		out[a] = ln
	}
	return out, nil
}
