package edge

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/termination"
)

// maxServerName is the longest DNS name (RFC 1035: 255 octets on the wire, 253 written).
const maxServerName = 253

// accepted is one connection on its way through the front's steps.
type accepted struct {
	s        *Server
	raw      net.Conn   // the client's socket
	addr     netip.Addr // the client's address, as access rules see it
	proxied  bool       // a PROXY header was read
	start    []byte     // bytes read past it: the ClientHello's first
	info     *relay.Info
	deadline time.Time   // of the handshake phase
	route    *Route      // set by the route step
	conn     *relay.Conn // what the route's handler gets; each step may replace it
	detached bool        // the relay loop finishes the connection, not handle
	counted  bool        // counted in the server's handshaking
	budgeted bool        // holds a place of Config.Connections
	limit    func()      // gives back the place the route's Limiter gave
}

// handle takes an accepted connection through the front's steps, in order: take a place
// under --max-connections, read the PROXY header of a trusted load balancer, refuse an
// address no endpoint admits, take a place among the connections in their handshake,
// read the ClientHello, find the route, check its ip_restriction, then its limits,
// terminate TLS where the route says so, hand the connection to the route's handler. A
// step that refuses the connection closes it and records why in its Info; the steps
// after it do not run. A new check is a new step.
func (s *Server) handle(c net.Conn) {
	a := s.admit(c)
	defer a.release()
	if !s.admitConnection(a) || !s.readProxy(a) || !s.admitAddress(a) || !s.admitHandshake(a) || !s.peek(a) || !s.route(a) ||
		!s.allowed(a) || !s.withinLimits(a) || !s.terminate(a) {
		return
	}
	s.handOff(a)
}

// admitConnection takes a place among all the connections tlsd holds, or closes the
// connection at once: the listener keeps accepting, so refusals stay fast.
func (s *Server) admitConnection(a *accepted) bool {
	if !s.cfg.Connections.take() {
		a.info.Fail("connections_full", fmt.Sprintf("limit --max-connections reached (%d)", s.cfg.Connections.Max()))
		a.raw.Close()
		return false
	}
	a.budgeted = true
	return true
}

// withinLimits takes a place under the endpoint's limits. A client refused by
// ip_restriction never gets here, so it costs no one a place.
func (s *Server) withinLimits(a *accepted) bool {
	if a.route.Limiter == nil {
		return true
	}
	release, code, reason := a.route.Limiter.Admit(a.route.Limits, a.addr, time.Now())
	if release == nil {
		a.info.Fail(code, reason)
		a.raw.Close()
		return false
	}
	a.limit = release
	return true
}

// readProxy takes the client's address from the PROXY header that a connection from a
// --proxy-protocol-from source must begin with; from any other source the TCP peer is
// the client.
func (s *Server) readProxy(a *accepted) bool {
	if !s.cfg.ProxySources.Trusts(a.addr) {
		return true
	}
	h, rest, err := readProxyHeader(a.raw)
	if err != nil {
		a.info.Fail(proxyFailure(err, a.addr))
		a.raw.Close()
		return false
	}
	a.proxied, a.start = true, rest
	if src, dst, ok := proxiedAddrs(h); ok {
		a.addr = src.AddrPort().Addr().Unmap()
		a.info.Client, a.info.Local = src, dst
	}
	return true
}

// admitAddress refuses, right after accept, an address that no endpoint of the listener
// admits: it costs no ClientHello read.
func (s *Server) admitAddress(a *accepted) bool {
	if s.table.Load().RefusesEveryRoute(a.addr) {
		a.info.Fail("ip_denied", fmt.Sprintf("client address %s is allowed by no endpoint of this listener", a.addr))
		a.raw.Close()
		return false
	}
	return true
}

// allowed checks the endpoint's ip_restriction before anything is dialed or sent: a
// refused client gets the access_denied alert, which tells it why.
func (s *Server) allowed(a *accepted) bool {
	if a.route.Access.Allows(a.addr) {
		return true
	}
	a.info.Fail("ip_denied", fmt.Sprintf("client address %s is not allowed by the ip_restriction of endpoint %s", a.addr, a.route.Endpoint))
	sendAlert(a.raw, alertAccessDenied)
	a.raw.Close()
	return false
}

// admitHandshake counts the connection among those in their handshake phase, or refuses
// it at once when MaxHandshakes are: slow or silent clients cost a bounded amount.
func (s *Server) admitHandshake(a *accepted) bool {
	if s.cfg.MaxHandshakes <= 0 {
		return true
	}
	if n := s.handshaking.Add(1); n > int64(s.cfg.MaxHandshakes) {
		s.handshaking.Add(-1)
		a.info.Fail("handshakes_full", fmt.Sprintf("%d connections are in their handshake already (--max-handshakes)", s.cfg.MaxHandshakes))
		a.raw.Close()
		return false
	}
	a.counted = true
	return true
}

// handshakeDone ends the connection's handshake phase, once.
func (a *accepted) handshakeDone() {
	if a.counted {
		a.counted = false
		a.s.handshaking.Add(-1)
	}
}

// admit starts the connection's account and its handshake deadline.
func (s *Server) admit(c net.Conn) *accepted {
	a := &accepted{s: s, raw: c, addr: clientAddr(c), info: &relay.Info{Client: c.RemoteAddr(), Start: time.Now()}}
	a.deadline = a.info.Start.Add(s.cfg.HandshakeTimeout)
	c.SetDeadline(a.deadline)
	return a
}

// peek reads the ClientHello without consuming it: the bytes go on with the connection.
func (s *Server) peek(a *accepted) bool {
	hello, peeked, err := peekWithin(a.raw, s.cfg.HelloBudget, a.start)
	a.start = nil
	if err != nil && !a.proxied && looksLikeProxyHeader(peeked) {
		a.info.Fail("proxy_untrusted", fmt.Sprintf("%s sent a PROXY protocol header but is not a --proxy-protocol-from source", a.addr))
		a.raw.Close()
		return false
	}
	if err != nil {
		a.info.Fail(peekFailure(err, len(peeked)))
		if alert := alertFor(err); alert != 0 {
			sendAlert(a.raw, alert)
		}
		a.raw.Close()
		return false
	}
	a.info.SNI = hello.ServerName
	a.conn = &relay.Conn{Conn: a.raw, Peeked: peeked, Hello: hello, Deadline: a.deadline, Info: a.info}
	return true
}

// route finds the endpoint of the server name. There is no default route: an unknown,
// missing or impossible name gets the unrecognized_name alert.
func (s *Server) route(a *accepted) bool {
	name := a.conn.Hello.ServerName
	if len(name) > maxServerName {
		a.info.SNI = relay.Bound(name, relay.MaxLoggedName)
		a.info.Fail("bad_sni", fmt.Sprintf("SNI of %d bytes, longer than a DNS name can be (%d)", len(name), maxServerName))
		sendAlert(a.raw, alertUnrecognizedName)
		a.raw.Close()
		return false
	}
	r := s.table.Load().Lookup(name)
	if r == nil {
		a.info.Fail(unknownSNI(name))
		sendAlert(a.raw, alertUnrecognizedName)
		a.raw.Close()
		return false
	}
	a.route = r
	a.info.Endpoint, a.info.Mode = r.Endpoint, r.Mode
	s.setRoute(a.raw, r)
	if s.cfg.OnRouted != nil {
		s.cfg.OnRouted(a.info)
	}
	return true
}

// terminate completes the TLS handshake of a route that terminates at the edge.
func (s *Server) terminate(a *accepted) bool {
	if a.route.TLS == nil {
		return true
	}
	tc, err := termination.Handshake(s.ctx, a.conn, a.route.TLS)
	if err != nil {
		return false
	}
	if tc.ConnectionState().NegotiatedProtocol == termination.ACMEALPN {
		// An ACME server validating TLS-ALPN-01: the handshake was the answer.
		a.info.Upstream = "(ACME tls-alpn-01 challenge answered)"
		tc.Close()
		return false
	}
	a.conn = &relay.Conn{Conn: tc, Hello: a.conn.Hello, Deadline: a.deadline, Info: a.info, Loop: s.loop}
	return true
}

// handOff gives the connection to the route's handler. A passthrough connection may
// leave handle while it lives on in the relay loop (detach).
func (s *Server) handOff(a *accepted) {
	a.handshakeDone()
	if a.route.TLS == nil && s.loop != nil {
		a.conn.Loop, a.conn.Detach = s.loop, a.detach
	}
	a.route.Handler.Serve(s.ctx, a.conn)
}

// detach hands the end of the connection to the relay loop: closer ends it early (a
// bounded drain, a shutdown), and the function returned finishes its account.
func (a *accepted) detach(closer io.Closer) func() {
	a.detached = true
	a.s.setCloser(a.raw, closer)
	return sync.OnceFunc(a.finish)
}

// release finishes the connection's account unless the relay loop took it over.
func (a *accepted) release() {
	a.handshakeDone()
	if !a.detached {
		a.finish()
	}
}

// finish forgets the connection and writes its log line and metrics: once its line is
// written, /status no longer counts it.
func (a *accepted) finish() {
	if o := a.s.untrack(a.raw); o != nil && o.expired != "" {
		a.info.Code, a.info.Reason = o.expired, o.expiredWhy // what the close made of the copy is not the story
	}
	if a.limit != nil {
		a.limit()
	}
	if a.budgeted {
		a.s.cfg.Connections.give()
	}
	a.s.end(a.info)
	a.s.conns.Done()
}
