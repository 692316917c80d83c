package edge

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// chunkConn hands out its bytes a few at a time, as a network may.
type chunkConn struct {
	net.Conn
	data  []byte
	chunk int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, errors.New("EOF of the test's bytes")
	}
	n := copy(b[:min(len(b), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func v2Header(t *testing.T, tlvs ...proxyproto.TLV) []byte {
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1234}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 443})
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadProxyHeader: v1 and v2 headers, whole or a byte at a time, leave exactly the
// bytes after them for the ClientHello; what is not a header, or too long, is refused.
func TestReadProxyHeader(t *testing.T) {
	hello := []byte("\x16\x03\x01 the ClientHello")
	v1 := []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443\r\n")
	big := v2Header(t, proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP, Value: make([]byte, maxProxyHeader)})
	cases := []struct {
		name string
		data []byte
		err  string // "" for a header from 192.0.2.7:1234
	}{
		{"v2", append(v2Header(t), hello...), ""},
		{"v2 with TLVs", append(v2Header(t, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("x.test")}), hello...), ""},
		{"v1", append(v1, hello...), ""},
		{"a ClientHello, no header", hello, "no PROXY protocol header"},
		{"a v1 line without its end", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1234 443" + strings.Repeat(" ", 100)), "longer than 107 bytes"},
		{"a v1 line of nonsense", []byte("PROXY TCP4 nonsense\r\n"), "malformed PROXY protocol header"},
		{"a v2 header past the bound", big, "longer than 4096 bytes"},
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 7, 4096} {
			h, rest, err := readProxyHeader(&chunkConn{data: bytes.Clone(c.data), chunk: chunk})
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("%s, %d-byte reads: %v, want %q", c.name, chunk, err, c.err)
			case c.err != "":
			case err != nil:
				t.Errorf("%s, %d-byte reads: %v", c.name, chunk, err)
			case h.SourceAddr.String() != "192.0.2.7:1234" || !bytes.HasPrefix(hello, rest):
				t.Errorf("%s, %d-byte reads: source %v, rest %q: want 192.0.2.7:1234 and the start of the hello", c.name, chunk, h.SourceAddr, rest)
			}
		}
	}
}
