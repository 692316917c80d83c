package edge

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

	"github.com/tlsd/tlsd/relay"
)

// HTTPFront is tlsd's HTTP listener (--http-listen). It answers ACME HTTP-01 validations
// through the generation's challenge answerers and redirects every other request for a
// served domain to its https:// address. Like an endpoint listener it is bound before a
// generation is switched in, kept across reloads, handed to a new binary on upgrade, and
// closed at shutdown once its requests are answered.
type HTTPFront struct {
	Addr   string // as configured: the listener's key in a hand-over
	ln     net.Listener
	srv    *http.Server
	routes atomic.Pointer[HTTPRoutes]
	log    *slog.Logger
}

// HTTPRoutes is what one generation gives the HTTP listener.
type HTTPRoutes struct {
	Challenges []HTTPChallenge
	Ports      map[string]string // domain (lower case, "*.x" for wildcards) -> https port
}

// HTTPChallenge answers the ACME HTTP-01 validations of one issuer: Serve reports
// whether the request was one it answered.
type HTTPChallenge struct {
	Issuer string
	Serve  func(http.ResponseWriter, *http.Request) bool
}

// MaxHTTPConnections bounds the HTTP listener's open connections: past it a new one is
// accepted and closed at once, so slow clients cannot pile up (and the listener never
// stops accepting). ACME validations and redirects need few.
const MaxHTTPConnections = 1024

// NewHTTPFront serves HTTP on ln (bound to addr as configured) once Serve runs, with
// handshake bounding each request's reading and writing.
func NewHTTPFront(addr string, ln net.Listener, handshake time.Duration, log *slog.Logger) *HTTPFront {
	f := &HTTPFront{Addr: addr, ln: ln, log: log}
	f.routes.Store(&HTTPRoutes{})
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: handshake, ReadTimeout: handshake, WriteTimeout: handshake,
		IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return f
}

// Serve answers requests until Shutdown.
func (f *HTTPFront) Serve() {
	f.log.Info("listening for HTTP: ACME http-01 and redirects to https", "address", f.ln.Addr().String())
	if err := f.srv.Serve(&boundedListener{Listener: f.ln, slots: make(chan struct{}, MaxHTTPConnections)}); err != nil && !errors.Is(err, http.ErrServerClosed) {
		f.log.Error("HTTP listener stopped", "address", f.Addr, "error", err)
	}
}

// Set publishes a generation's routes; a nil front (no --http-listen) ignores them.
func (f *HTTPFront) Set(r *HTTPRoutes) {
	if f != nil {
		f.routes.Store(r)
	}
}

// Listener is the socket the front serves on.
func (f *HTTPFront) Listener() net.Listener { return f.ln }

// Shutdown stops accepting and waits, until ctx ends, for the requests being answered.
func (f *HTTPFront) Shutdown(ctx context.Context) {
	if f == nil {
		return
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		f.srv.Close()
	}
}

func (f *HTTPFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := f.routes.Load()
	for _, c := range rt.Challenges {
		if c.Serve(w, r) {
			f.log.Info("answered an ACME http-01 validation", "host", relay.Bound(r.Host, relay.MaxLoggedName), "issuer", c.Issuer)
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
func (rt *HTTPRoutes) port(host string) (string, bool) {
	if p, ok := rt.Ports[host]; ok {
		return p, true
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		p, ok := rt.Ports["*."+parent]
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
