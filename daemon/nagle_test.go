package daemon

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// firstRequest is how long a client that leaves Nagle's algorithm on (as Python's ssl
// and many language defaults do) waits for the answer to its first small request after
// the handshake: the best of five connections.
func firstRequest(t *testing.T, e *env, cfg *tls.Config) time.Duration {
	best := time.Hour
	for range 5 {
		raw, err := net.DialTCP("tcp", nil, e.d.Addr("").(*net.TCPAddr))
		must(t, err)
		must(t, raw.SetNoDelay(false))
		tc := tls.Client(raw, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		must(t, tc.Handshake())
		start := time.Now()
		if _, err := tc.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(tc, make([]byte, 18)); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
		tc.Close()
	}
	return best
}

// TestFirstRequestWithoutNoDelay: the answer to the first request after the handshake
// does not wait for a delayed ACK (40 ms on Linux), at the edge and at the agent.
func TestFirstRequestWithoutNoDelay(t *testing.T) {
	e := newEnv(t)
	up := newEchoServer(t, nil)
	e.leaf(e.agentCA, "agent", "agent.test")
	e.start(yamlEndpoint("edge", "edge.test", up.addr(), "edge", "  issuer: internal\n") +
		yamlEndpoint("agent", "agent.test", up.addr(), "agent", "  certificate: {crt: agent.crt, key: agent.key}\n"))
	for _, c := range []struct {
		sni string
		cfg *tls.Config
	}{
		{"edge.test", &tls.Config{ServerName: "edge.test", RootCAs: e.internalRoots()}},
		{"agent.test", &tls.Config{ServerName: "agent.test", RootCAs: pool(e.agentCA)}},
	} {
		if d := firstRequest(t, e, c.cfg); d > 20*time.Millisecond {
			t.Errorf("%s: the first request's answer took %s at best", c.sni, d)
		} else {
			t.Logf("%s: %s", c.sni, d)
		}
	}
}
