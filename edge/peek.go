package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
)

// MaxClientHello bounds the bytes read while looking for the ClientHello. A post-quantum
// ClientHello is under 2 KiB; 64 KiB (the largest handshake message crypto/tls accepts)
// leaves room for large extensions without letting a client make tlsd buffer without
// limit.
const MaxClientHello = 64 << 10

var (
	errHelloTooLarge   = fmt.Errorf("ClientHello larger than %d bytes", MaxClientHello)
	errNotAClientHello = errors.New("not a TLS ClientHello")
)

// peekBufs hold the bytes of ClientHellos being read. Nearly all fit in the first
// buffer; what the connection keeps is an exact copy of the bytes read.
var peekBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// PeekClientHello reads the client's ClientHello and returns what tlsd routes by with
// every byte read, which the caller must replay to whatever handles the connection next.
// It reads nothing past the bytes the client has sent with its hello, and allocates
// little: this runs for every connection. The caller sets the deadline.
func PeekClientHello(conn net.Conn) (*tls.ClientHelloInfo, []byte, error) {
	bp := peekBufs.Get().(*[]byte)
	defer peekBufs.Put(bp)
	buf := (*bp)[:0]
	for {
		hello, need, perr := parseClientHello(buf)
		if hello != nil {
			return hello, clone(buf), nil
		}
		if perr != nil {
			return nil, clone(buf), fmt.Errorf("%w: %v", errNotAClientHello, perr)
		}
		if need > MaxClientHello {
			return nil, clone(buf), errHelloTooLarge
		}
		if need > cap(buf) {
			buf = append(make([]byte, 0, min(max(need, 2*cap(buf)), MaxClientHello)), buf...)
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, clone(buf), err
		}
	}
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
