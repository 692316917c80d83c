package edge

import (
	"crypto/tls"
	"net"
)

// PeekClientHello is peekWithin without a budget or bytes read before: the tests' way
// into the peek.
func PeekClientHello(conn net.Conn) (*tls.ClientHelloInfo, []byte, error) {
	return peekWithin(conn, nil, nil)
}
