package runtime

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// firehose serves connections that write without end until the peer goes; wrap, if set,
// turns each socket into the connection to write on (a TLS server).
func firehose(t *testing.T, wrap func(net.Conn) net.Conn) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	chunk := make([]byte, 64<<10)
	acceptEach(t, ln, func(c net.Conn) {
		defer c.Close()
		if wrap != nil {
			c = wrap(c)
		}
		for range 100000 { // bounded: 6.4 GB at most
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestAgentDeathAbortsTheClient: when the agent's session dies in the middle of a
// transfer, the client sees the connection broken (a reset; for edge termination, no
// close_notify), never a clean end it would take for a complete body, and the log says why.
func TestAgentDeathAbortsTheClient(t *testing.T) {
	t.Parallel()
	upstreamCA, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	zkLeaf, _ := upstreamCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	secure := firehose(t, func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{zkPair}}) })
	plain := firehose(t, nil)
	for _, c := range []struct {
		name, sni, config string
		roots             func(*splitEnv) *tls.Config
	}{
		{"passthrough", "zk.test", yamlEndpoint("zk", "zk.test", secure, "", "") + "agent: api-agent\n",
			func(*splitEnv) *tls.Config { return &tls.Config{RootCAs: pool(upstreamCA)} }},
		{"edge termination", "ed.test", yamlEndpoint("ed", "ed.test", plain, "edge", "  issuer: internal\n") + "agent: api-agent\n",
			func(s *splitEnv) *tls.Config { return &tls.Config{RootCAs: s.internalRoots()} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := startSplit(t, c.config, nil)
			cfg := c.roots(s)
			cfg.ServerName = c.sni
			conn, err := s.dialTLS(cfg)
			must(t, err)
			defer conn.Close()
			if _, err := io.ReadFull(conn, make([]byte, 1<<20)); err != nil {
				t.Fatalf("the transfer did not start: %v", err)
			}
			s.stopAgent()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.Copy(io.Discard, conn)
			t.Logf("after the agent died the client read %d more bytes, then: %v", n, err)
			switch {
			case err == nil:
				t.Error("the client saw a clean end (close_notify, or EOF) of a transfer its agent abandoned")
			case !errors.Is(err, syscall.ECONNRESET):
				t.Errorf("the client's read ended with %v, want a reset", err)
			}
			s.log.waitFor(t, "connection failed", "endpoint="+c.sni[:2], "ended in the middle of the stream")
		})
	}
}

// TestHungAgentIsPassedOver: a second session of the agent's pool accepts streams and
// never answers. Every client is still served (its stream fails over to the live agent
// within a third of the handshake timeout), and after a few unanswered streams the hung
// session is marked unhealthy and passed over at once.
func TestHungAgentIsPassedOver(t *testing.T) {
	// Not parallel: it measures failover against a third of the handshake timeout, and a
	// loaded machine would stretch the live agent's answer past that.
	upstreamCA, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	zkLeaf, _ := upstreamCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	zk := newEchoServer(t, func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{zkPair}}) })
	s := startSplit(t, yamlEndpoint("zk", "zk.test", zk.addr(), "", "")+"agent: api-agent\n", nil)
	hung := rogueSession(t, s.tunnelAddr, s.agentTLS)
	go func() { // accepts every stream and holds it, silent
		for {
			st, err := hung.AcceptStream()
			if err != nil {
				return
			}
			defer st.Close()
		}
	}()
	s.log.waitFor(t, "agent connected", "sessions=2")
	cfg := &tls.Config{ServerName: "zk.test", RootCAs: pool(upstreamCA)}
	for i := range 8 {
		start := time.Now()
		tc, err := s.dialTLS(cfg)
		if err != nil {
			t.Fatalf("client %d: %v\n%s", i, err, s.log)
		}
		if got, err := roundTrip(tc, []byte("hello")); err != nil || string(got) != "hello" {
			t.Fatalf("client %d: echo %q, %v", i, got, err)
		}
		tc.Close()
		t.Logf("client %d served in %s", i, time.Since(start).Round(time.Millisecond))
	}
	s.log.waitFor(t, "agent session unhealthy: it left streams unanswered")
	for _, a := range s.d.Status().Agents {
		t.Logf("session %s healthy=%v streams=%d", a.Address, a.Healthy, a.Streams)
	}
}
