package runtime

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// proxyUpstream accepts on ln, parses the PROXY header, and reports the source address
// it carried, then echoes.
func proxyUpstream(t *testing.T, ln net.Listener) chan string {
	sources := make(chan string, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			h, err := proxyproto.Read(br)
			if err != nil {
				sources <- "no PROXY header: " + err.Error()
				c.Close()
				continue
			}
			sources <- h.SourceAddr.String()
			c.SetReadDeadline(time.Time{})
			go func() { io.Copy(c, br); c.(interface{ CloseWrite() error }).CloseWrite() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return sources
}

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
	tcpSources, unixSources := proxyUpstream(t, tcpLn), proxyUpstream(t, unixLn)
	e.start(yamlEndpoint("v2", "v2.test", tcpLn.Addr().String(), "edge", "  issuer: internal\n") + "upstream_proxy_protocol: v2\n" +
		yamlEndpoint("v1", "v1.test", "unix:up.sock", "edge", "  issuer: internal\n") + "upstream_proxy_protocol: v1\n")
	for _, c := range []struct {
		sni     string
		sources chan string
	}{{"v2.test", tcpSources}, {"v1.test", unixSources}} {
		t.Run(c.sni, func(t *testing.T) {
			tc, err := e.dialTLS(&tls.Config{ServerName: c.sni, RootCAs: e.internalRoots()})
			must(t, err)
			defer tc.Close()
			got, err := roundTrip(tc, []byte("who am I"))
			if err != nil || string(got) != "who am I" {
				t.Fatalf("echo %q, %v", got, err)
			}
			if src := <-c.sources; src != tc.LocalAddr().String() {
				t.Errorf("PROXY header says the client is %s; it is %s", src, tc.LocalAddr())
			}
		})
	}
}
