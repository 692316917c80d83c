package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

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

// TestSilentSessionsDoNotStallTheirAgent: three sessions with the agent's credential
// accept streams and never answer, beside the real agent. Eight parallel clients are all
// served, none in more than 1.5 s (a stream waiting on a silent session is sent through
// another within DefaultMoveAfter); then the silent sessions are suspects, and a second
// round goes to the session that answers without waiting on any of them.
func TestSilentSessionsDoNotStallTheirAgent(t *testing.T) {
	// Not parallel: it bounds how long a client waits, which a loaded machine stretches.
	upstreamCA, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	zkLeaf, _ := upstreamCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	zk := newEchoServer(t, func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{zkPair}}) })
	s := startSplit(t, yamlEndpoint("zk", "zk.test", zk.addr(), "", "")+"agent: api-agent\n", nil)
	for range 3 {
		silent(rogueSession(t, s.tunnelAddr, s.agentTLS))
	}
	s.log.waitFor(t, "agent connected", "sessions=4")
	cfg := &tls.Config{ServerName: "zk.test", RootCAs: pool(upstreamCA)}
	for round := range 2 {
		slowest := serveParallel(t, s, cfg, 8)
		t.Logf("round %d: the slowest of 8 clients was served in %s", round, slowest.Round(time.Millisecond))
		if slowest > 1500*time.Millisecond {
			t.Errorf("round %d: a client waited %s for its ServerHello, over 1.5 s", round, slowest)
		}
	}
	s.log.waitFor(t, "agent did not answer; trying another session")
	healthy := 0
	for _, a := range s.d.Status().Agents {
		if a.Healthy {
			healthy++
		}
	}
	if healthy == 0 {
		t.Error("no session is healthy, though the real agent answered every stream it got")
	}
}

// silent accepts every stream of a session and holds it without a word.
func silent(sess *yamux.Session) {
	go func() {
		var held []net.Conn
		defer func() {
			for _, st := range held {
				st.Close()
			}
		}()
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			held = append(held, st)
		}
	}()
}

// serveParallel runs n clients at once through s and returns how long the slowest took
// to complete its handshake; each must echo.
func serveParallel(t *testing.T, s *splitEnv, cfg *tls.Config, n int) time.Duration {
	t.Helper()
	took := make(chan time.Duration, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			start := time.Now()
			tc, err := s.dialTLS(cfg)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			defer tc.Close()
			took <- time.Since(start)
			if got, err := roundTrip(tc, []byte("hello")); err != nil || string(got) != "hello" {
				errs <- fmt.Errorf("client %d: echo %q, %v", i, got, err)
				return
			}
			errs <- nil
		}()
	}
	var slowest time.Duration
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(took)
	for d := range took {
		slowest = max(slowest, d)
	}
	return slowest
}
