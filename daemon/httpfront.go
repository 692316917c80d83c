package daemon

import (
	"fmt"
	"net"

	"github.com/tlsd/tlsd/edge"
)

// httpRoutesLocked are the routes of next for the HTTP listener: its ACME managers, and
// the bound https port of every domain.
func (d *Daemon) httpRoutesLocked(next *generation) *edge.HTTPRoutes {
	rt := &edge.HTTPRoutes{Ports: map[string]string{}}
	for _, m := range next.acme {
		rt.Challenges = append(rt.Challenges, edge.HTTPChallenge{Issuer: m.Config().Name, Serve: m.ServeHTTPChallenge})
	}
	for _, br := range next.routes {
		key := next.listeners[br.ep.Listen]
		s := d.servers[key]
		if s == nil {
			continue
		}
		if _, port, err := net.SplitHostPort(s.Addr().String()); err == nil {
			rt.Ports[br.ep.Domain] = port
		}
	}
	return rt
}

// bindHTTPLocked binds --http-listen for the first generation (later ones keep it).
// It must not be an endpoint listener too.
func (d *Daemon) bindHTTPLocked(endpointAddrs map[string]bool) (net.Listener, error) {
	addr := d.opts.HTTPListen
	if addr == "" {
		return nil, nil
	}
	if endpointAddrs[addr] {
		return nil, fmt.Errorf("--http-listen %s is also the listener of endpoints; give it an address of its own (e.g. :80)", addr)
	}
	if d.http != nil {
		return nil, nil
	}
	ln, err := d.opts.Bind(d.ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--http-listen): %w", addr, err)
	}
	return ln, nil
}

// HTTPAddr is the bound address of the HTTP listener, nil without --http-listen.
func (d *Daemon) HTTPAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.http == nil {
		return nil
	}
	return d.http.Listener().Addr()
}
