package client

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/tunnel"
)

// Route is how an agent serves a stream's endpoint.
type Route struct {
	Mode     string // the endpoint's terminate_at: edge streams carry plaintext
	Timeouts relay.Timeouts
	Back     relay.Handler
}

// Stream is one stream an edge opened, with what serves it here.
type Stream struct {
	Agent            string // this agent's name, for the log
	Header           tunnel.Header
	Conn             net.Conn
	Route            *Route // nil: this agent does not serve the endpoint
	HandshakeTimeout time.Duration
	Log              *slog.Logger
}

// ServeStream serves s and logs its end: an endpoint this agent does not serve, or one
// the edge and the agent disagree on, is refused; otherwise the route's back serves the
// stream as a connection from the client the header names, under the endpoint's
// timeouts.
func ServeStream(ctx context.Context, s Stream) {
	h := s.Header
	info := &relay.Info{Endpoint: h.Endpoint, Client: addr(h.Client), Local: addr(h.Local), SNI: h.SNI, Start: time.Now()}
	if t := h.TLS; t != nil && h.Plain {
		info.TLSVersion, info.ALPN, info.Resumed, info.ClientCert, info.ClientCN = t.Version, t.ALPN, t.Resumed, t.ClientCert, t.ClientCN
	}
	defer relay.LogEnd(s.Log, info)
	r := s.Route
	switch {
	case r == nil:
		info.Fail("unknown_endpoint", fmt.Sprintf("the edge sent a connection for endpoint %s, which agent %s does not serve", h.Endpoint, s.Agent))
		s.Conn.Close()
		return
	case h.Plain != (r.Mode == modeEdge):
		info.Fail("config_mismatch", fmt.Sprintf("edge and agent disagree on endpoint %s (the edge sent %s, this agent serves terminate_at: %s); deploy the same configuration to both",
			h.Endpoint, map[bool]string{true: "plaintext", false: "TLS"}[h.Plain], r.Mode))
		s.Conn.Close()
		return
	}
	info.Mode = r.Mode
	conn := &addrConn{Conn: s.Conn, remote: addr(h.Client), local: addr(h.Local)}
	w := watchTimeouts(r.Timeouts, info.Start, s.Conn)
	defer w.stop(info)
	r.Back.Serve(ctx, &relay.Conn{Conn: conn, Deadline: time.Now().Add(s.HandshakeTimeout), Info: info, Dialed: w.dialed})
}

// modeEdge is terminate_at: edge, the one mode whose streams carry plaintext.
const modeEdge = "edge"

// streamWatch enforces an endpoint's timeouts on the agent's side of a stream, judged on
// the upstream's socket (a stream is no socket): the edge does the same on the client's,
// and whichever sees a timeout first ends the connection. A stream already holds the
// goroutines of its copy, so one timer more is a small part of it.
type streamWatch struct {
	t       relay.Timeouts
	since   time.Time
	st      net.Conn
	up      atomic.Pointer[net.Conn]
	timer   *time.Timer
	stopped atomic.Bool               // the stream is over: no more looks
	why     atomic.Pointer[[2]string] // code and reason of the timeout that closed st
}

func watchTimeouts(t relay.Timeouts, since time.Time, st net.Conn) *streamWatch {
	w := &streamWatch{t: t, since: since, st: st}
	if t.Any() {
		w.timer = time.AfterFunc(relay.SweepEvery, w.check)
	}
	return w
}

func (w *streamWatch) dialed(up net.Conn) { w.up.Store(&up) }

// check closes the stream once a timeout has passed, else looks again when one may.
func (w *streamWatch) check() {
	if w.stopped.Load() {
		return
	}
	var idle time.Duration
	var half, known bool
	if up := w.up.Load(); up != nil {
		var err error
		idle, half, err = relay.SocketActivity(*up)
		known = err == nil
	}
	code, reason, wait := w.t.Verdict(time.Since(w.since), idle, half, known)
	if code == "" {
		w.timer.Reset(wait)
		return
	}
	w.why.Store(&[2]string{code, reason})
	w.st.Close()
}

// stop ends the watch; a timeout that closed the stream is what info says happened.
func (w *streamWatch) stop(info *relay.Info) {
	w.stopped.Store(true)
	if w.timer != nil {
		w.timer.Stop()
	}
	if why := w.why.Load(); why != nil {
		info.Code, info.Reason = why[0], why[1]
	}
}

// addrConn gives a tunnel stream the addresses of the client connection it carries, so
// that PROXY headers and logs name the real client.
type addrConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) LocalAddr() net.Addr  { return c.local }

type textAddr string

func (a textAddr) Network() string { return "tcp" }
func (a textAddr) String() string  { return string(a) }

func addr(s string) net.Addr {
	if ta, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return ta
	}
	return textAddr(s)
}
