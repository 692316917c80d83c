package daemon

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsd/tlsd/autocert"
	"github.com/tlsd/tlsd/relay"
)

// httpFront is tlsd's HTTP listener (--http-listen). It answers ACME HTTP-01 validations
// for every issuer of the generation served (from the shared state store too, so any
// edge of a fleet answers for the one that ordered) and redirects every other request
// for a served domain to its https:// address. Like an endpoint listener it is bound
// before a generation is switched in, kept across reloads, handed to a new binary on
// upgrade, and closed at shutdown once its requests are answered.
type httpFront struct {
	addr   string // as configured: the listener's key in a hand-over
	ln     net.Listener
	srv    *http.Server
	routes atomic.Pointer[httpRoutes]
	log    *slog.Logger
}

// httpRoutes is what one generation gives the HTTP listener.
type httpRoutes struct {
	managers []*autocert.Manager
	ports    map[string]string // domain (lower case, "*.x" for wildcards) -> https port
}

// MaxHTTPConnections bounds the HTTP listener's open connections: past it a new one is
// accepted and closed at once, so slow clients cannot pile up (and the listener never
// stops accepting). ACME validations and redirects need few.
const MaxHTTPConnections = 1024

func newHTTPFront(addr string, ln net.Listener, handshake time.Duration, log *slog.Logger) *httpFront {
	f := &httpFront{addr: addr, ln: ln, log: log}
	f.routes.Store(&httpRoutes{})
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: handshake, ReadTimeout: handshake, WriteTimeout: handshake,
		IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return f
}

func (f *httpFront) serve() {
	f.log.Info("listening for HTTP: ACME http-01 and redirects to https", "address", f.ln.Addr().String())
	if err := f.srv.Serve(&boundedListener{Listener: f.ln, slots: make(chan struct{}, MaxHTTPConnections)}); err != nil && !errors.Is(err, http.ErrServerClosed) {
		f.log.Error("HTTP listener stopped", "address", f.addr, "error", err)
	}
}

// set publishes a generation's routes; a nil front (no --http-listen) ignores them.
func (f *httpFront) set(r *httpRoutes) {
	if f != nil {
		f.routes.Store(r)
	}
}

func (f *httpFront) shutdown(ctx context.Context) {
	if f == nil {
		return
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		f.srv.Close()
	}
}

func (f *httpFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := f.routes.Load()
	for _, m := range rt.managers {
		if m.ServeHTTPChallenge(w, r) {
			f.log.Info("answered an ACME http-01 validation", "host", relay.Bound(r.Host, relay.MaxLoggedName), "issuer", m.Config().Name)
			return
		}
	}
	host := hostOnly(r.Host)
	port, ok := rt.port(host)
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "no endpoint serves %s\n", html.EscapeString(relay.Bound(host, relay.MaxLoggedName)))
		return
	}
	target := "https://" + host
	if port != "443" {
		target = "https://" + net.JoinHostPort(host, port)
	}
	http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// port is the https port of the endpoint serving host: its own domain, else a wildcard
// covering it.
func (rt *httpRoutes) port(host string) (string, bool) {
	if p, ok := rt.ports[host]; ok {
		return p, true
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		p, ok := rt.ports["*."+parent]
		return p, ok
	}
	return "", false
}

func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// httpRoutesLocked are the routes of next for the HTTP listener: its ACME managers, and
// the bound https port of every domain.
func (d *Daemon) httpRoutesLocked(next *generation) *httpRoutes {
	rt := &httpRoutes{ports: map[string]string{}}
	for _, m := range next.acme {
		rt.managers = append(rt.managers, m)
	}
	for _, br := range next.routes {
		key := next.listeners[br.ep.Listen]
		s := d.servers[key]
		if s == nil {
			continue
		}
		if _, port, err := net.SplitHostPort(s.Addr().String()); err == nil {
			rt.ports[br.ep.Domain] = port
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
	return d.http.ln.Addr()
}

// boundedListener accepts at most cap(slots) connections open at once; past that it
// closes new ones as it accepts them.
type boundedListener struct {
	net.Listener
	slots chan struct{}
}

func (l *boundedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close()
		}
	}
}

// slotConn gives its slot back once, when closed.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
