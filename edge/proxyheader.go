package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/tlsd/tlsd/iprange"

	proxyproto "github.com/pires/go-proxyproto"
)

// maxProxyHeader bounds a PROXY v2 header with its TLVs. Load balancers send tens of
// bytes (AWS and GCP add an ID of their own); a v1 header is 107 bytes at most.
const maxProxyHeader = 4096

const maxProxyV1 = 107

var (
	errNoProxyHeader     = errors.New("no PROXY protocol header")
	errProxyHeaderTooBig = fmt.Errorf("PROXY protocol header longer than %d bytes", maxProxyHeader)
	proxyV1Prefix        = []byte("PROXY ")
)

// readProxyHeader reads the PROXY protocol header (v1 or v2) a trusted load balancer
// sends before its client's bytes, and returns it with the bytes read past it, which
// begin the ClientHello. Framing is found here so that nothing past a v2 header is read
// once its length is known; parsing is go-proxyproto's.
func readProxyHeader(conn net.Conn) (*proxyproto.Header, []byte, error) {
	buf := make([]byte, 0, 512)
	for {
		total, err := proxyHeaderLen(buf)
		if err != nil {
			return nil, nil, err
		}
		if total > 0 && len(buf) >= total {
			h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(buf[:total]), total))
			if err != nil {
				return nil, nil, fmt.Errorf("malformed PROXY protocol header: %w", err)
			}
			return h, buf[total:], nil
		}
		if total > cap(buf) {
			buf = append(make([]byte, 0, total), buf...) // read exactly the rest
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, nil, err
		}
	}
}

// proxyHeaderLen is the length of the header buf begins with, 0 while buf is too short
// to tell, or an error when buf does not begin with one.
func proxyHeaderLen(buf []byte) (int, error) {
	switch {
	case len(buf) == 0:
		return 0, nil
	case hasPrefixSoFar(buf, proxyproto.SIGV2):
		if len(buf) < 16 {
			return 0, nil
		}
		total := 16 + int(binary.BigEndian.Uint16(buf[14:16]))
		if total > maxProxyHeader {
			return 0, errProxyHeaderTooBig
		}
		return total, nil
	case hasPrefixSoFar(buf, proxyV1Prefix):
		if i := bytes.Index(buf, []byte("\r\n")); i >= 0 && i+2 <= maxProxyV1 {
			return i + 2, nil
		}
		if len(buf) >= maxProxyV1 {
			return 0, fmt.Errorf("malformed PROXY protocol header: a v1 line longer than %d bytes", maxProxyV1)
		}
		return 0, nil
	}
	return 0, errNoProxyHeader
}

// hasPrefixSoFar reports whether buf and sig agree on the bytes both have.
func hasPrefixSoFar(buf, sig []byte) bool {
	n := min(len(buf), len(sig))
	return bytes.Equal(buf[:n], sig[:n])
}

// looksLikeProxyHeader reports whether a client's first bytes are a PROXY header.
func looksLikeProxyHeader(b []byte) bool {
	return bytes.HasPrefix(b, proxyV1Prefix[:5]) || bytes.HasPrefix(b, proxyproto.SIGV2)
}

// proxiedAddrs are the client's and the original destination's addresses a header
// gives; ok is false for a LOCAL command or an UNKNOWN family (a load balancer's own
// health check), whose connection then counts as the peer's own.
func proxiedAddrs(h *proxyproto.Header) (src, dst *net.TCPAddr, ok bool) {
	if h.Command.IsLocal() {
		return nil, nil, false
	}
	return h.TCPAddrs()
}

// ProxySources are the networks whose connections must begin with a PROXY header
// (--proxy-protocol-from); nil trusts none.
type ProxySources struct{ set iprange.Set }

// NewProxySources trusts the given prefixes; one that cannot be used is an error.
func NewProxySources(prefixes []netip.Prefix) (*ProxySources, error) {
	if len(prefixes) == 0 {
		return nil, nil
	}
	set, err := iprange.NewSet(prefixes)
	if err != nil {
		return nil, fmt.Errorf("--proxy-protocol-from: %w", err)
	}
	return &ProxySources{set: set}, nil
}

// Trusts reports whether addr is a trusted PROXY source.
func (p *ProxySources) Trusts(addr netip.Addr) bool {
	return p != nil && p.set.Contains(addr)
}

// proxyFailure explains why a trusted source's connection had no usable PROXY header.
func proxyFailure(err error, peer netip.Addr) (code, reason string) {
	var ne net.Error
	switch {
	case errors.Is(err, errNoProxyHeader):
		return "proxy_missing", fmt.Sprintf("connection from %s, a --proxy-protocol-from source, did not begin with a PROXY protocol header", peer)
	case errors.As(err, &ne) && ne.Timeout():
		return "proxy_timeout", fmt.Sprintf("no complete PROXY protocol header from %s before the handshake timeout", peer)
	case errors.Is(err, io.EOF):
		return "client_closed", fmt.Sprintf("%s closed the connection before the end of its PROXY protocol header", peer)
	}
	return "proxy_malformed", fmt.Sprintf("PROXY protocol header from %s refused: %v", peer, err)
}
