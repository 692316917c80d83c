package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/tunnel/server"
)

// capturingConn keeps the first bytes the agent reads from a stream.
type capturingConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
}

func (c *capturingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if len(c.first) < 16 {
		c.first = append(c.first, p[:min(n, 16-len(c.first))]...)
	}
	c.mu.Unlock()
	return n, err
}

// TestTunnelCarriesTLSUntouched runs an edge and an agent in this process, with the
// agent recording what arrives through the tunnel: for agent- and upstream-terminated
// endpoints it is the client's TLS records, for edge-terminated ones plaintext.
// splitEnv is an edge daemon and an agent in this process, joined by a real tunnel.
type splitEnv struct {
	*env
	agent      *Agent
	stopAgent  func()      // ends the agent's tunnel, as if the agent died
	tunnelAddr string      // where agents dial the edge
	agentTLS   *tls.Config // what api-agent dials with
}

// startSplit starts the edge with config and the agent "api-agent" with the same
// configuration; wrap, if set, sits between the tunnel and the agent's stream handler;
// agentOpts tune the agent's options.
func startSplit(tb testing.TB, config string, wrap func(h func(context.Context, tunnel.Header, net.Conn)) func(context.Context, tunnel.Header, net.Conn), agentOpts ...func(*Options)) *splitEnv {
	return startSplitOn(tb, config, wrap, nil, 0, agentOpts...)
}

// startSplitVia is startSplit with the agent dialing the edge through the address via
// returns for the tunnel's (a delay line), and streams' windows of window bytes.
func startSplitVia(tb testing.TB, config string, via func(tunnel string) string, window uint32) *splitEnv {
	return startSplitOn(tb, config, nil, via, window)
}

func startSplitOn(tb testing.TB, config string, wrap func(h func(context.Context, tunnel.Header, net.Conn)) func(context.Context, tunnel.Header, net.Conn),
	via func(string) string, window uint32, agentOpts ...func(*Options)) *splitEnv {
	e := newEnv(tb)
	tunnelCA, err := testpki.NewCA("tunnel CA", time.Time{}, time.Time{})
	must(tb, err)
	edgeCert, err := tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	must(tb, err)
	agentCert, err := e.clientCA.Issue(testpki.Options{CommonName: "api-agent", DNSNames: []string{"api-agent"}, Client: true})
	must(tb, err)
	e.leaf(e.agentCA, "ag", "ag.test")
	tp := server.NewAgentPool(slogTo(e.log))
	tp.Window = window
	tunnelLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(tb, err)
	ec, _ := tls.X509KeyPair(edgeCert.CertPEM(), edgeCert.KeyPEM())
	go tp.Serve(tunnelLn, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(e.clientCA)})
	e.start(config, func(o *Options) { o.Tunnel = tp })
	tb.Cleanup(tp.Close)

	ao := Options{Logger: slogTo(e.log), HandshakeTimeout: 5 * time.Second}
	for _, f := range agentOpts {
		f(&ao)
	}
	s := &splitEnv{env: e, agent: NewAgent("api-agent", ao)}
	tb.Cleanup(s.agent.Close)
	_, err = s.agent.Apply(loadConfig(tb, e.path("endpoints.yaml")))
	must(tb, err)
	handle := s.agent.Handle
	if wrap != nil {
		handle = wrap(handle)
	}
	ac, _ := tls.X509KeyPair(agentCert.CertPEM(), agentCert.KeyPEM())
	s.tunnelAddr = tunnelLn.Addr().String()
	s.agentTLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ac}, RootCAs: pool(tunnelCA)}
	dialed := s.tunnelAddr
	if via != nil {
		dialed = via(s.tunnelAddr)
	}
	s.agent.Tunnel = &client.Tunnels{Edges: []string{dialed}, Log: slogTo(e.log), Handle: handle, TLS: s.agentTLS, Window: window,
		Report: s.agent.CertificateReport}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.agent.Tunnel.Run(ctx) }()
	s.stopAgent = sync.OnceFunc(func() { cancel(); <-done })
	tb.Cleanup(s.stopAgent)
	e.log.waitFor(tb, "agent connected", "agent=api-agent")
	return s
}

func TestTunnelCarriesTLSUntouched(t *testing.T) {
	t.Parallel()
	plain := newEchoServer(t, nil)
	upstreamCA, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	zkLeaf, _ := upstreamCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	zk := newEchoServer(t, func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{zkPair}}) })
	cfg := yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "agent: api-agent\n" +
		yamlEndpoint("ag", "ag.test", plain.addr(), "agent", "  certificate: {crt: ag.crt, key: ag.key}\n") + "agent: api-agent\n" +
		yamlEndpoint("ed", "ed.test", plain.addr(), "edge", "  issuer: internal\n") + "agent: api-agent\n"
	var mu sync.Mutex
	captured := map[string]*capturingConn{}
	s := startSplit(t, cfg, func(next func(context.Context, tunnel.Header, net.Conn)) func(context.Context, tunnel.Header, net.Conn) {
		return func(ctx context.Context, h tunnel.Header, st net.Conn) {
			cc := &capturingConn{Conn: st}
			mu.Lock()
			captured[h.Endpoint] = cc
			mu.Unlock()
			next(ctx, h, cc)
		}
	})
	e := s.env
	for _, c := range []struct {
		sni, endpoint string
		cfg           *tls.Config
		tls           bool
	}{
		{"zk.test", "zk", &tls.Config{ServerName: "zk.test", RootCAs: pool(upstreamCA)}, true},
		{"ag.test", "ag", &tls.Config{ServerName: "ag.test", RootCAs: pool(e.agentCA)}, true},
		{"ed.test", "ed", &tls.Config{ServerName: "ed.test", RootCAs: e.internalRoots()}, false},
	} {
		tc, err := e.dialTLS(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.sni, err, e.log)
		}
		got, err := roundTrip(tc, []byte("through the tunnel"))
		tc.Close()
		if err != nil || string(got) != "through the tunnel" {
			t.Fatalf("%s: echo %q, %v", c.sni, got, err)
		}
		mu.Lock()
		cc := captured[c.endpoint]
		mu.Unlock()
		cc.mu.Lock()
		first := bytes.Clone(cc.first)
		cc.mu.Unlock()
		isTLS := len(first) >= 3 && first[0] == 22 && first[1] == 3 // a handshake record
		if isTLS != c.tls {
			t.Errorf("%s: the agent received % x...; TLS records: %v, want %v", c.sni, first, isTLS, c.tls)
		}
	}
	st := e.d.Status()
	if len(st.Agents) != 1 || st.Agents[0].Name != "api-agent" || st.Agents[0].Streams != 3 {
		t.Errorf("edge status agents = %+v", st.Agents)
	}
	// The agent reports the certificate it holds, in its own status and to the edge,
	// which shows it as the agent's (it has no copy).
	var agentSerial string
	for _, ep := range s.agent.Status().Endpoints {
		if ep.Name == "ag" && (ep.Certificate == nil || ep.Certificate.Source != admin.SourceFile) {
			t.Errorf("the agent's status of ag: %+v", ep)
		} else if ep.Name == "ag" {
			agentSerial = ep.Certificate.Serial
		}
	}
	reported := func() *admin.CertificateStatus {
		for _, ep := range e.d.Status().Endpoints {
			if ep.Name == "ag" {
				return ep.Certificate
			}
		}
		return nil
	}
	if !eventually(5*time.Second, func() bool { c := reported(); return c != nil && c.Serial == agentSerial && c.HeldBy == "api-agent" }) {
		t.Errorf("the edge's status of ag: certificate %+v, want the agent's (serial %s) held by api-agent", reported(), agentSerial)
	}
	if _, m := get(t, s.agent.AdminHandler(), "/metrics"); !strings.Contains(m, `tlsd_certificate_expiry_timestamp_seconds{endpoint="ag",source="file"}`) {
		t.Errorf("the agent's metrics lack the expiry of the certificate it holds:\n%s", m)
	}
}
