package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// Upstream forwards connections to one of a pool of upstream addresses ("host:port" or
// "unix:PATH"), optionally speaking TLS to it.
type Upstream struct {
	Pool *Pool
	// ProxyProtocol is 0 (off), 1 or 2: the PROXY protocol header version to send first,
	// carrying the client's address.
	ProxyProtocol byte
	// FirstByteTimeout, for passthrough, bounds how long the upstream may stay silent
	// after the peeked ClientHello; a TLS server always answers one. Zero disables it
	// (plaintext upstreams may rightly wait for the client to speak first). It applies
	// only when the connection comes with its ClientHello peeked.
	FirstByteTimeout time.Duration
	// TLS, when set, makes tlsd a TLS client of the upstream (tls://): verified against
	// its RootCAs (nil: the system's) for its ServerName ("": the entry's host), with a
	// session cache shared by the pool's connections. Never modified once in use.
	TLS *tls.Config
}

// Serve dials the upstream, sends the PROXY header and any peeked bytes, and copies both
// ways until both sides are done.
func (u *Upstream) Serve(ctx context.Context, c *relay.Conn) {
	c.Info.Upstream = u.Pool.Entries[0].Addr
	var up net.Conn
	var entry *Entry
	connect := func() (err error) { up, entry, err = u.connect(ctx, c); return err }
	var err error
	if c.Detach != nil {
		err = connect() // this goroutine ends once the relay loop takes the connection: its stack goes with it
	} else {
		err = relay.OnFreshStack(connect)
	}
	c.Info.UpstreamResult = "ok"
	if err != nil {
		c.Info.UpstreamResult = "failed"
		failWith(c, err)
		c.Conn.Close()
		return
	}
	defer countOn(entry, c)()
	if c.Dialed != nil {
		c.Dialed(up)
	}
	if err := u.writePreamble(up, c); err != nil {
		c.Info.Fail("upstream_broken", fmt.Sprintf("writing to upstream %s: %v", c.Info.Upstream, err))
		up.Close()
		c.Conn.Close()
		return
	}
	c.Conn.SetDeadline(time.Time{})
	hadHello := len(c.Peeked) > 0
	c.Peeked, c.Hello = nil, nil            // sent: let an idle connection keep none of it
	if u.FirstByteTimeout > 0 && hadHello { // the ClientHello was sent: an answer is due
		if err := relayFirstByte(c, up, u.FirstByteTimeout); err != nil {
			failWith(c, err)
			up.Close()
			c.Conn.Close()
			return
		}
	}
	c.Forward(up)
}

// countOn counts c among entry's open connections until it ends: when the returned
// function runs, or, for a connection the relay loop takes over, when the loop ends it.
func countOn(entry *Entry, c *relay.Conn) (done func()) {
	entry.Active.Add(1)
	detach := c.Detach
	if detach == nil {
		return func() { entry.Active.Add(-1) }
	}
	var detached bool
	c.Detach = func(closer io.Closer) func() {
		detached = true
		finish := detach(closer)
		return sync.OnceFunc(func() { entry.Active.Add(-1); finish() })
	}
	return func() {
		if !detached {
			entry.Active.Add(-1)
		}
	}
}

// connect dials an entry of the pool and, for a tls:// upstream, completes the
// handshake, all within the connection's handshake deadline.
func (u *Upstream) connect(ctx context.Context, c *relay.Conn) (net.Conn, *Entry, error) {
	start := time.Now()
	up, entry, err := u.Pool.dial(ctx, c.Deadline)
	c.Info.UpstreamDial = time.Since(start)
	if entry != nil {
		c.Info.Upstream = entry.Addr
	}
	if err != nil {
		return nil, nil, err
	}
	if u.TLS == nil {
		return up, entry, nil
	}
	start = time.Now()
	tc, err := u.handshake(ctx, up, entry.Addr, c)
	c.Info.UpstreamTLS = time.Since(start)
	if err != nil {
		up.Close()
		return nil, nil, err
	}
	return tc, entry, nil
}

// handshake speaks TLS to the upstream, offering onward the protocol the client
// negotiated, if any.
func (u *Upstream) handshake(ctx context.Context, up net.Conn, addr string, c *relay.Conn) (*tls.Conn, error) {
	cfg := u.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if c.Info.ALPN != "" {
		cfg.NextProtos = []string{c.Info.ALPN}
	}
	tc := tls.Client(up, cfg)
	if !c.Deadline.IsZero() {
		tc.SetDeadline(c.Deadline)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, upstreamTLSFailure(addr, cfg.ServerName, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// upstreamTLSFailure says why the upstream's TLS was refused, naming the upstream.
func upstreamTLSFailure(addr, name string, err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var ne net.Error
	switch {
	case errors.As(err, &unknown):
		return failuref("upstream_tls", "upstream %s certificate signed by unknown authority %q", addr, unknown.Cert.Issuer.CommonName)
	case errors.As(err, &host):
		return failuref("upstream_tls", "upstream %s certificate is not for %s (it is for %s)", addr, name, certNames(host.Certificate))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return failuref("upstream_tls", "upstream %s certificate expired or not yet valid (valid %s to %s)", addr,
			invalid.Cert.NotBefore.UTC().Format(time.DateOnly), invalid.Cert.NotAfter.UTC().Format(time.DateOnly))
	case errors.As(err, &ne) && ne.Timeout():
		return failuref("upstream_timeout", "upstream %s did not finish its TLS handshake before the handshake timeout", addr)
	}
	return failuref("upstream_tls", "TLS to upstream %s failed: %v", addr, strings.TrimPrefix(err.Error(), "tls: "))
}

func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) > 4 {
		names = append(names[:4], fmt.Sprintf("%d more", len(names)-4))
	}
	return strings.Join(names, ", ")
}

func dialAddr(ctx context.Context, target string, deadline time.Time) (net.Conn, error) {
	network, addr := "tcp", target
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		network, addr = "unix", path
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		return c, nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, failuref("upstream_refused", "upstream %s refused the connection", target)
	case errors.As(err, &ne) && ne.Timeout():
		return nil, failuref("upstream_timeout", "upstream %s did not accept the connection before the handshake timeout", target)
	case errors.Is(err, syscall.ENOENT):
		return nil, failuref("upstream_refused", "upstream socket %s does not exist", addr)
	}
	return nil, failuref("upstream_unreachable", "dial upstream %s: %v", target, err)
}

// failure is an error with the stable code that metrics count it under.
type failure struct{ code, msg string }

func (f *failure) Error() string { return f.msg }

func failuref(code, format string, args ...any) error {
	return &failure{code: code, msg: fmt.Sprintf(format, args...)}
}

func failWith(c *relay.Conn, err error) {
	var f *failure
	if errors.As(err, &f) {
		c.Info.Fail(f.code, f.msg)
		return
	}
	c.Info.Fail("upstream_broken", err.Error())
}

// writePreamble sends what the upstream must read before the client's own bytes.
func (u *Upstream) writePreamble(up net.Conn, c *relay.Conn) error {
	if u.ProxyProtocol != 0 {
		h, err := proxyHeader(u.ProxyProtocol, c)
		if err != nil {
			return err
		}
		if _, err := h.WriteTo(up); err != nil {
			return err
		}
	}
	if len(c.Peeked) > 0 {
		if _, err := up.Write(c.Peeked); err != nil {
			return err
		}
		c.Info.BytesIn += int64(len(c.Peeked))
	}
	return nil
}

// firstReplyBufs hold the upstream's first reply on its way to the client, so a
// connection that then goes idle keeps no buffer of its own.
var firstReplyBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// relayFirstByte waits, bounded, for the upstream's first bytes (its ServerHello) and
// passes them on. Reading once by hand keeps both sockets unwrapped, so the copy that
// follows can still splice.
func relayFirstByte(c *relay.Conn, up net.Conn, timeout time.Duration) error {
	bp := firstReplyBufs.Get().(*[]byte)
	defer firstReplyBufs.Put(bp)
	buf := *bp
	up.SetReadDeadline(time.Now().Add(timeout))
	n, err := up.Read(buf)
	up.SetReadDeadline(time.Time{})
	if n > 0 {
		if _, werr := c.Conn.Write(buf[:n]); werr != nil {
			return failuref("client_closed", "client went away before the upstream's reply: %v", werr)
		}
		c.Info.BytesOut += int64(n)
	}
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return failuref("upstream_silent", "upstream %s sent nothing within %s of the ClientHello", c.Info.Upstream, timeout)
	case n == 0:
		return failuref("upstream_closed", "upstream %s closed the connection without answering", c.Info.Upstream)
	}
	return nil // data and an error: the copy reports the error
}
