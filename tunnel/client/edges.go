package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tlsd/tlsd/tunnel"
)

// Tunnels keeps a session to every edge: one TunnelClient per --edge, and per address an
// edge's name resolves to (re-resolved every Resolve), each on its own, so that one edge
// going down disturbs no other.
type Tunnels struct {
	Edges  []string // host:port, as given
	TLS    *tls.Config
	Config func() *tls.Config   // when set, each session's TLS configuration instead of TLS
	Report func() tunnel.Report // what the agent tells an edge of the certificates it holds
	Handle func(ctx context.Context, h tunnel.Header, stream net.Conn)
	Log    *slog.Logger
	// BackoffBase and BackoffMax bound each client's reconnect waits; Window is each
	// stream's receive window.
	BackoffBase, BackoffMax time.Duration
	Window                  uint32
	// Resolve is how often edge names are looked up again (0: DefaultResolve); Lookup
	// resolves (nil: the system's resolver).
	Resolve time.Duration
	Lookup  func(ctx context.Context, host string) ([]netip.Addr, error)

	wg sync.WaitGroup // every client's Run, also of those stopped when an address went away

	mu       sync.Mutex // guards the following fields
	clients  map[string]*runningClient
	draining bool
}

// DefaultResolve is how often edge names are resolved again.
const DefaultResolve = 30 * time.Second

type runningClient struct {
	c    *TunnelClient
	stop context.CancelFunc
	done chan struct{}
}

// Run keeps every session until ctx ends, then waits for the clients to finish.
func (t *Tunnels) Run(ctx context.Context) {
	every := t.Resolve
	if every <= 0 {
		every = DefaultResolve
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		t.sync(ctx)
		select {
		case <-ctx.Done():
			t.stopAll()
			t.wg.Wait()
			return
		case <-tick.C:
		}
	}
}

// sync starts a client for every address wanted now and stops those no longer wanted.
func (t *Tunnels) sync(ctx context.Context) {
	want := t.targets(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clients == nil {
		t.clients = map[string]*runningClient{}
	}
	if t.draining {
		return
	}
	for key, tc := range want {
		if t.clients[key] == nil {
			t.clients[key] = t.start(ctx, tc)
		}
	}
	for key, rc := range t.clients {
		if want[key] == nil {
			t.Log.Info("edge address no longer resolves: closing its session", "edge", rc.c.Edge, "address", rc.c.Addr)
			rc.stop() // its streams end with it: the edge has moved away from that address
			delete(t.clients, key)
		}
	}
}

func (t *Tunnels) start(ctx context.Context, c *TunnelClient) *runningClient {
	cctx, stop := context.WithCancel(ctx)
	rc := &runningClient{c: c, stop: stop, done: make(chan struct{})}
	t.wg.Add(1)
	go func() { defer t.wg.Done(); defer close(rc.done); c.Run(cctx) }()
	return rc
}

// targets are the clients wanted, by edge and address. A name that does not resolve
// keeps the addresses it had (a resolver's hiccup must not cut sessions), or, never
// resolved yet, is dialed by name, which retries with backoff.
func (t *Tunnels) targets(ctx context.Context) map[string]*TunnelClient {
	want := map[string]*TunnelClient{}
	for _, edge := range t.Edges {
		for _, addr := range t.addresses(ctx, edge) {
			key := edge + " " + addr
			want[key] = t.existing(key)
			if want[key] == nil {
				want[key] = t.client(edge, addr)
			}
		}
	}
	return want
}

func (t *Tunnels) existing(key string) *TunnelClient {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rc := t.clients[key]; rc != nil {
		return rc.c
	}
	return nil
}

// addresses are where to dial edge: itself when its host is an address, else every
// address its name resolves to ("" meaning the name itself, when it never resolved).
func (t *Tunnels) addresses(ctx context.Context, edge string) []string {
	host, port, err := net.SplitHostPort(edge)
	if err != nil {
		return []string{""}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{""}
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := t.lookup(lctx, host)
	if err != nil || len(ips) == 0 {
		if held := t.heldAddresses(edge); len(held) > 0 {
			t.Log.Warn("edge name does not resolve now: keeping the sessions it had", "edge", edge, "error", errString(err))
			return held
		}
		return []string{""}
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (t *Tunnels) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if t.Lookup != nil {
		return t.Lookup(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

func (t *Tunnels) heldAddresses(edge string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, rc := range t.clients {
		if rc.c.Edge == edge {
			out = append(out, rc.c.Addr)
		}
	}
	return out
}

func (t *Tunnels) client(edge, addr string) *TunnelClient {
	return &TunnelClient{Edge: edge, Addr: addr, TLS: t.TLS, Config: t.Config, Report: t.Report, Handle: t.Handle, Log: t.Log,
		BackoffBase: t.BackoffBase, BackoffMax: t.BackoffMax, Window: t.Window}
}

func (t *Tunnels) stopAll() {
	t.mu.Lock()
	clients := t.clients
	t.clients = nil
	t.mu.Unlock()
	for _, rc := range clients {
		rc.stop()
		<-rc.done
	}
}

func (t *Tunnels) each(f func(*TunnelClient)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rc := range t.clients {
		f(rc.c)
	}
}

// Drain drains every session (see TunnelClient.Drain) and starts no new ones.
func (t *Tunnels) Drain() {
	t.mu.Lock()
	t.draining = true
	t.mu.Unlock()
	t.each(func(c *TunnelClient) { c.Drain() })
}

// Active is the number of streams being served, across sessions.
func (t *Tunnels) Active() int64 {
	var n int64
	t.each(func(c *TunnelClient) { n += c.Active() })
	return n
}

// Sessions are each edge session's status, in a stable order.
func (t *Tunnels) Sessions() []TunnelStatus {
	var out []TunnelStatus
	t.each(func(c *TunnelClient) { out = append(out, c.Status()) })
	slices.SortFunc(out, func(a, b TunnelStatus) int {
		return cmp.Or(strings.Compare(a.Edge, b.Edge), strings.Compare(a.Address, b.Address))
	})
	return out
}

// Status sums the sessions up: connected while any is, since the oldest live one.
func (t *Tunnels) Status() TunnelStatus {
	st := TunnelStatus{Edge: strings.Join(t.Edges, ", ")}
	for _, s := range t.Sessions() {
		st.Reconnects += s.Reconnects
		st.Streams += s.Streams
		if s.Connected && (!st.Connected || s.Since.Before(st.Since)) {
			st.Since = s.Since
		}
		st.Connected = st.Connected || s.Connected
	}
	return st
}

// Connected is the number of sessions up.
func (t *Tunnels) Connected() int {
	n := 0
	for _, s := range t.Sessions() {
		if s.Connected {
			n++
		}
	}
	return n
}
