package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsd/tlsd/internal/proxy"
)

// Upstream forwards connections to one upstream address: "host:port" or "unix:PATH".
type Upstream struct {
	Addr string
	// ProxyProtocol is 0 (off), 1 or 2: the PROXY protocol header version to send first,
	// carrying the client's address.
	ProxyProtocol byte
	// FirstByteTimeout, for passthrough, bounds how long the upstream may stay silent
	// after the ClientHello; a TLS server always answers one. Zero disables it (plaintext
	// upstreams may rightly wait for the client to speak first).
	FirstByteTimeout time.Duration
}

// Serve dials the upstream, sends the PROXY header and any peeked bytes, and copies both
// ways until both sides are done.
func (u *Upstream) Serve(ctx context.Context, c *proxy.Conn) {
	c.Info.Upstream = u.Addr
	up, err := u.dial(ctx, c.Deadline)
	if err != nil {
		c.Info.Fail(err.Error())
		c.Conn.Close()
		return
	}
	if err := u.writePreamble(up, c); err != nil {
		c.Info.Fail(fmt.Sprintf("writing to upstream %s: %v", u.Addr, err))
		up.Close()
		c.Conn.Close()
		return
	}
	c.Conn.SetDeadline(time.Time{})
	if u.FirstByteTimeout > 0 {
		if err := relayFirstByte(c, up, u.FirstByteTimeout); err != nil {
			c.Info.Fail(err.Error())
			up.Close()
			c.Conn.Close()
			return
		}
	}
	in, out, err := proxy.Pipe(c.Conn, up)
	c.Info.BytesIn += in
	c.Info.BytesOut += out
	if err != nil {
		c.Info.Fail("connection broken: " + err.Error())
	}
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
		return nil, fmt.Errorf("upstream %s refused the connection", u.Addr)
	case errors.As(err, &ne) && ne.Timeout():
		return nil, fmt.Errorf("upstream %s did not accept the connection before the handshake timeout", u.Addr)
	case errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("upstream socket %s does not exist", addr)
	}
	return nil, fmt.Errorf("dial upstream %s: %v", u.Addr, err)
}

// writePreamble sends what the upstream must read before the client's own bytes.
func (u *Upstream) writePreamble(up net.Conn, c *proxy.Conn) error {
	if u.ProxyProtocol != 0 {
		h := proxyproto.HeaderProxyFromAddrs(u.ProxyProtocol, c.RemoteAddr(), c.LocalAddr())
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

// relayFirstByte waits, bounded, for the upstream's first bytes (its ServerHello) and
// passes them on. Reading once by hand keeps both sockets unwrapped, so the copy that
// follows can still splice.
func relayFirstByte(c *proxy.Conn, up net.Conn, timeout time.Duration) error {
	buf := make([]byte, 4096)
	up.SetReadDeadline(time.Now().Add(timeout))
	n, err := up.Read(buf)
	up.SetReadDeadline(time.Time{})
	if n > 0 {
		if _, werr := c.Conn.Write(buf[:n]); werr != nil {
			return fmt.Errorf("client went away before the upstream's reply: %v", werr)
		}
		c.Info.BytesOut += int64(n)
	}
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("upstream %s sent nothing within %s of the ClientHello", c.Info.Upstream, timeout)
	case n == 0:
		return fmt.Errorf("upstream %s closed the connection without answering", c.Info.Upstream)
	}
	return nil // data and an error: the copy reports the error
}
