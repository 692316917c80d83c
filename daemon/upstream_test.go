package daemon

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// TestProxyProtocolAndUnixUpstreams: the upstream learns the real client address from a
// PROXY header (v1 and v2), over TCP and over a Unix socket.
func TestProxyProtocolAndUnixUpstreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	sock := filepath.Join(e.dir, "up.sock")
	unixLn, err := net.Listen("unix", sock)
	must(t, err)
	tcpHeaders, unixHeaders := headersOn(t, tcpLn), headersOn(t, unixLn)
	e.start(yamlEndpoint("v2", "v2.test", tcpLn.Addr().String(), "edge", "  issuer: internal\n") + "upstream_proxy_protocol: v2\n" +
		yamlEndpoint("v1", "v1.test", "unix:up.sock", "edge", "  issuer: internal\n") + "upstream_proxy_protocol: v1\n")
	for _, c := range []struct {
		sni     string
		headers chan *proxyproto.Header
	}{{"v2.test", tcpHeaders}, {"v1.test", unixHeaders}} {
		t.Run(c.sni, func(t *testing.T) {
			tc, err := e.dialTLS(&tls.Config{ServerName: c.sni, RootCAs: e.internalRoots()})
			must(t, err)
			defer tc.Close()
			got, err := roundTrip(tc, []byte("who am I"))
			if err != nil || string(got) != "who am I" {
				t.Fatalf("echo %q, %v", got, err)
			}
			if src := (<-c.headers).SourceAddr.String(); src != tc.LocalAddr().String() {
				t.Errorf("PROXY header says the client is %s; it is %s", src, tc.LocalAddr())
			}
		})
	}
}
