package daemon

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// openFrom opens a passthrough connection to zk.test from src and checks it is served
// (one echoed byte); nil if it was refused.
func openFrom(t *testing.T, e *env, src string) *tls.Conn {
	t.Helper()
	tc, err := dialFrom(e.addr(), src, "zk.test", &tls.Config{RootCAs: pool(e.upstreamCA)})
	if err != nil {
		return nil
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Write([]byte("x")); err != nil {
		tc.Close()
		return nil
	}
	if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
		tc.Close()
		return nil
	}
	tc.SetDeadline(time.Time{})
	t.Cleanup(func() { tc.Close() })
	return tc
}

// activeOf is how many connections tlsd counts for endpoint.
func activeOf(e *env, endpoint string) int {
	for _, ep := range e.d.Status().Endpoints {
		if ep.Name == endpoint {
			return ep.ActiveConnections
		}
	}
	return -1
}

// TestMaxConnectionsPerIP: the 51st concurrent connection of one address is refused
// while another address is served, and a place given back is taken again.
func TestMaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "limits:\n  max_connections_per_ip: 50\n")
	var open []*tls.Conn
	for i := range 50 {
		c := openFrom(t, e, "127.0.0.1")
		if c == nil {
			t.Fatalf("connection %d of 50 was refused", i+1)
		}
		open = append(open, c)
	}
	if c := openFrom(t, e, "127.0.0.1"); c != nil {
		t.Fatal("the 51st connection of 127.0.0.1 was served")
	}
	e.log.waitFor(t, "connection failed", "limit max_connections_per_ip reached (50) for 127.0.0.1")
	if c := openFrom(t, e, "127.0.0.2"); c == nil {
		t.Fatal("127.0.0.2 was refused while 127.0.0.1 held its 50")
	}
	for _, ep := range e.d.Status().Endpoints {
		if ep.Limits == nil || ep.Limits.MaxConnectionsPerIP != 50 || ep.LimitedConnections == nil || *ep.LimitedConnections != 51 {
			t.Errorf("/status shows limits %+v and %v connections holding places, want 50 per IP and 51", ep.Limits, ep.LimitedConnections)
		}
	}
	open[0].Close()
	if !eventually(5*time.Second, func() bool { return activeOf(e, "zk") == 50 }) {
		t.Fatalf("tlsd counts %d connections after one of 51 closed", activeOf(e, "zk"))
	}
	if c := openFrom(t, e, "127.0.0.1"); c == nil {
		t.Error("a place given back was not taken again")
	}
}

// TestRatePerIP: with rate_per_ip "5/s", the 6th connection within a second is refused,
// and the address is admitted again once its bucket has refilled.
func TestRatePerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "limits:\n  rate_per_ip: \"5/s\"\n")
	// Six connections inside 200 ms (when one more token would have come); a slow
	// machine gets a fresh second and another try.
	for attempt := 0; ; attempt++ {
		start := time.Now()
		served := 0
		for range 6 {
			if c := openFrom(t, e, "127.0.0.1"); c != nil {
				served++
				c.Close()
			}
		}
		if time.Since(start) < 200*time.Millisecond {
			if served != 5 {
				t.Fatalf("%d of 6 connections in %s were served, want 5", served, time.Since(start))
			}
			break
		}
		if attempt == 4 {
			t.Fatal("the machine is too slow to open 6 connections in 200 ms")
		}
		time.Sleep(1200 * time.Millisecond) // a full bucket again
	}
	e.log.waitFor(t, "connection failed", "limit rate_per_ip reached (5 per 1s) for 127.0.0.1")
	if !eventually(2*time.Second, func() bool { c := openFrom(t, e, "127.0.0.1"); return c != nil }) {
		t.Error("127.0.0.1 was not admitted again after its bucket refilled")
	}
}

// TestMaxConnectionsAcrossReload: a reload that changes the endpoint gives it a new
// route, and the limit still counts the old route's connections.
func TestMaxConnectionsAcrossReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	base := yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "limits:\n  max_connections: 3\n"
	e.start(base)
	var open []*tls.Conn
	for range 3 {
		if c := openFrom(t, e, "127.0.0.1"); c != nil {
			open = append(open, c)
		}
	}
	must(t, e.apply(base+"timeouts:\n  idle: 1h\n")) // a change: a new route for zk
	if c := openFrom(t, e, "127.0.0.2"); c != nil {
		t.Fatal("a 4th connection was served: the new generation did not count the old one's 3")
	}
	e.log.waitFor(t, "connection failed", "limit max_connections reached (3)")
	open[0].Close()
	if !eventually(5*time.Second, func() bool { c := openFrom(t, e, "127.0.0.2"); return c != nil }) {
		t.Error("a place the old generation gave back was not taken by the new one")
	}
}

// TestMaxConnectionsOfTheProcess: past --max-connections a connection is accepted and
// closed at once, and the listener goes on.
func TestMaxConnectionsOfTheProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", ""), func(o *Options) { o.MaxConnections = 2 })
	a, b := openFrom(t, e, "127.0.0.1"), openFrom(t, e, "127.0.0.1")
	if a == nil || b == nil {
		t.Fatal("the first two connections were refused")
	}
	if c := openFrom(t, e, "127.0.0.1"); c != nil {
		t.Fatal("a third connection was served past --max-connections 2")
	}
	e.log.waitFor(t, "connection failed", "limit --max-connections reached (2)")
	a.Close()
	if !eventually(5*time.Second, func() bool { c := openFrom(t, e, "127.0.0.1"); return c != nil }) {
		t.Error("the listener did not serve again below --max-connections")
	}
}

// TestMaxHandshakesRefusesFast: with --max-handshakes 2, clients that stay silent in
// their handshake hold the places, and the next one is closed at once rather than after
// the handshake timeout.
func TestMaxHandshakesRefusesFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", ""), func(o *Options) { o.MaxHandshakes = 2 })
	// A silent client still open after 300 ms holds a place; one closed by then was
	// refused. The third at the latest must be.
	for i := range 3 {
		c, err := net.Dial("tcp", e.addr())
		must(t, err)
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !strings.Contains(err.Error(), "timeout") {
			e.log.waitFor(t, "connection failed", "2 connections are in their handshake already (--max-handshakes)")
			return
		}
		t.Logf("silent client %d holds a place", i+1)
	}
	t.Fatal("three silent clients held places past --max-handshakes 2")
}

// TestFallbackEndpoint: a connection without SNI, or with one no endpoint serves, goes
// to the listener's fallback endpoint.
func TestFallbackEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test", "default.test")
	e.start(yamlEndpoint("zk", "default.test", zk.addr(), "", "") + "fallback: true\n")
	for _, sni := range []string{"", "unknown.test"} {
		tc, err := e.dialTLS(&tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("SNI %q: %v, want the fallback endpoint", sni, err)
		}
		if got, err := roundTrip(tc, []byte("fallback")); err != nil || string(got) != "fallback" {
			t.Errorf("SNI %q: echo %q, %v", sni, got, err)
		}
		tc.Close()
	}
	e.log.waitFor(t, "connection closed", "endpoint=zk", "sni=unknown.test")
}
