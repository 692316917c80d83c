package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// MaxClientHello bounds the bytes read while looking for the ClientHello. A post-quantum
// ClientHello is under 2 KiB; 64 KiB leaves room for large extensions without letting a
// client make tlsd buffer without limit.
const MaxClientHello = 64 << 10

var (
	errPeeked          = errors.New("clienthello peeked")
	errReadOnly        = errors.New("peek: connection is read-only")
	errHelloTooLarge   = fmt.Errorf("ClientHello larger than %d bytes", MaxClientHello)
	errNotAClientHello = errors.New("not a TLS ClientHello")
)

// PeekClientHello reads the client's ClientHello with crypto/tls's own parser and returns
// it with every byte read, which the caller must replay to whatever handles the
// connection next. The caller sets the deadline.
func PeekClientHello(conn net.Conn) (*tls.ClientHelloInfo, []byte, error) {
	rc := &recordingConn{Conn: conn}
	var hello *tls.ClientHelloInfo
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c := *h
		c.Conn = nil // the recording conn must not outlive the peek
		hello = &c
		return nil, errPeeked
	}}
	err := tls.Server(rc, cfg).Handshake()
	if hello != nil {
		return hello, rc.buf.Bytes(), nil
	}
	switch {
	case rc.err != nil:
		err = rc.err
	case rc.tooLarge:
		err = errHelloTooLarge
	case err == nil:
		err = errNotAClientHello
	default:
		err = fmt.Errorf("%w: %v", errNotAClientHello, err)
	}
	return nil, rc.buf.Bytes(), err
}

// recordingConn keeps every byte read and refuses writes, so the peek never answers the
// client: whatever handles the connection next sends the first byte.
type recordingConn struct {
	net.Conn
	buf      bytes.Buffer
	err      error // the first read error of the underlying connection
	tooLarge bool
}

func (c *recordingConn) Read(p []byte) (int, error) {
	room := MaxClientHello - c.buf.Len()
	if room <= 0 {
		c.tooLarge = true
		return 0, errHelloTooLarge
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := c.Conn.Read(p)
	c.buf.Write(p[:n])
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *recordingConn) Write([]byte) (int, error) { return 0, errReadOnly }
