package daemon

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream echoes and counts the connections it accepts.
func countingUpstream(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var n atomic.Int64
	acceptEach(t, ln, func(c net.Conn) { n.Add(1); defer c.Close(); io.Copy(c, c) })
	return ln.Addr().String(), &n
}

// dialFrom connects from the loopback address src with a TLS client for sni.
func dialFrom(addr, src, sni string, roots *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cfg := roots.Clone()
	cfg.ServerName = sni
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

// TestIPRestriction: allow and deny lists, from an IPPolicy and the endpoint's own, in
// every mode, against clients from 127.0.0.1 and 127.0.0.2: a refused client gets
// access_denied before anything reaches the upstream; an admitted one is served.
func TestIPRestriction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plainAddr, dialed := countingUpstream(t)
	zk := e.tlsUpstream("zk.test")
	e.leaf(e.agentCA, "agent", "agent.test")
	only2 := "ip_restriction:\n  policies: [second]\n"
	not2 := "ip_restriction:\n  allow_cidrs: [127.0.0.0/8]\n  deny_cidrs: [127.0.0.2]\n"
	e.start(yamlEndpoint("edge", "edge.test", plainAddr, "edge", "  issuer: internal\n") + only2 +
		yamlEndpoint("agent", "agent.test", plainAddr, "agent", "  certificate: {crt: agent.crt, key: agent.key}\n") + not2 +
		yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + only2 +
		yamlEndpoint("open", "open.test", zk.addr(), "", "") +
		"---\napiVersion: tlsd/v1\nkind: IPPolicy\nname: second\nallow_cidrs: [127.0.0.2]\n")
	cfgs := map[string]*tls.Config{
		"edge.test": {RootCAs: e.internalRoots()}, "agent.test": {RootCAs: pool(e.agentCA)},
		"zk.test": {RootCAs: pool(e.upstreamCA)}, "open.test": {InsecureSkipVerify: true},
	}
	cases := []struct {
		sni, src string
		admit    bool
	}{
		{"edge.test", "127.0.0.2", true}, {"edge.test", "127.0.0.1", false},
		{"agent.test", "127.0.0.1", true}, {"agent.test", "127.0.0.2", false},
		{"zk.test", "127.0.0.2", true}, {"zk.test", "127.0.0.1", false},
		{"open.test", "127.0.0.1", true}, {"open.test", "127.0.0.2", true},
	}
	for _, c := range cases {
		tc, err := dialFrom(e.addr(), c.src, c.sni, cfgs[c.sni])
		switch {
		case c.admit && err != nil:
			t.Errorf("%s from %s: %v, want served", c.sni, c.src, err)
		case !c.admit && (err == nil || !strings.Contains(err.Error(), "access denied")):
			t.Errorf("%s from %s: %v, want the access_denied alert", c.sni, c.src, err)
		}
		if err == nil {
			if got, err := roundTrip(tc, []byte("x")); err != nil || string(got) != "x" {
				t.Errorf("%s from %s: echo %q, %v", c.sni, c.src, got, err)
			}
			tc.Close()
		}
	}
	// The two admitted clients of the plain upstream's endpoints, and no refused one.
	if n := dialed.Load(); n != 2 {
		t.Errorf("the plain upstream was dialed %d times, want 2 (refused clients must reach nothing)", n)
	}
	e.log.waitFor(t, "connection failed", "sni=edge.test", "client address 127.0.0.1 is not allowed by the ip_restriction of endpoint edge")
}

// TestIPRestrictionRefusesAtAccept: when no endpoint of a listener admits an address, its
// connection is closed right after accept, before any ClientHello is read.
func TestIPRestrictionRefusesAtAccept(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "ip_restriction:\n  allow_cidrs: [127.0.0.2/32]\n")
	raw, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, e.d.Addr("").(*net.TCPAddr))
	must(t, err)
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Errorf("read %d bytes, %v: want the connection closed without a word", n, err)
	}
	e.log.waitFor(t, "connection failed", "client address 127.0.0.1 is allowed by no endpoint of this listener")
	tc, err := dialFrom(e.addr(), "127.0.0.2", "zk.test", &tls.Config{RootCAs: pool(e.upstreamCA)})
	if err != nil {
		t.Fatalf("the allowed address: %v", err)
	}
	tc.Close()
}
