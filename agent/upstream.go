package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// Upstream forwards connections to one upstream address: "host:port" or "unix:PATH".
type Upstream struct {
	Addr string
	// ProxyProtocol is 0 (off), 1 or 2: the PROXY protocol header version to send first,
	// carrying the client's address.
	ProxyProtocol byte
	// FirstByteTimeout, for passthrough, bounds how long the upstream may stay silent
	// after the peeked ClientHello; a TLS server always answers one. Zero disables it
	// (plaintext upstreams may rightly wait for the client to speak first). It applies
	// only when the connection comes with its ClientHello peeked.
	FirstByteTimeout time.Duration
}

// Serve dials the upstream, sends the PROXY header and any peeked bytes, and copies both
// ways until both sides are done.
func (u *Upstream) Serve(ctx context.Context, c *relay.Conn) {
	c.Info.Upstream = u.Addr
	var up net.Conn
	err := relay.OnFreshStack(func() (err error) { up, err = u.dial(ctx, c.Deadline); return err })
	if err != nil {
		failWith(c, err)
		c.Conn.Close()
		return
	}
	if c.Dialed != nil {
		c.Dialed(up)
	}
	if err := u.writePreamble(up, c); err != nil {
		c.Info.Fail("upstream_broken", fmt.Sprintf("writing to upstream %s: %v", u.Addr, err))
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

func (u *Upstream) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	network, addr := "tcp", u.Addr
	if path, ok := strings.CutPrefix(u.Addr, "unix:"); ok {
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
		return nil, failuref("upstream_refused", "upstream %s refused the connection", u.Addr)
	case errors.As(err, &ne) && ne.Timeout():
		return nil, failuref("upstream_timeout", "upstream %s did not accept the connection before the handshake timeout", u.Addr)
	case errors.Is(err, syscall.ENOENT):
		return nil, failuref("upstream_refused", "upstream socket %s does not exist", addr)
	}
	return nil, failuref("upstream_unreachable", "dial upstream %s: %v", u.Addr, err)
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
