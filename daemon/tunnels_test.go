package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/tunnel/server"
)

// resolver answers a name with the addresses the test sets, or fails.
type resolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	calls int
}

func (r *resolver) called() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *resolver) set(err error, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err, r.addrs = err, nil
	for _, a := range addrs {
		r.addrs = append(r.addrs, netip.MustParseAddr(a))
	}
}

func (r *resolver) lookup(context.Context, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	return r.addrs, r.err
}

// TestAgentKeepsASessionPerEdgeAddress: an edge name resolving to two addresses gets a
// session to each; a lookup that fails keeps them; an address that stops resolving loses
// its session while the other's stays as it was.
func TestAgentKeepsASessionPerEdgeAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tunnelCA, err := testpki.NewCA("tunnel CA", time.Time{}, time.Time{})
	must(t, err)
	edgeCert, _ := tunnelCA.Issue(testpki.Options{CommonName: "edge.test", DNSNames: []string{"edge.test"}})
	ec, _ := tls.X509KeyPair(edgeCert.CertPEM(), edgeCert.KeyPEM())
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(e.clientCA)}
	first, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	_, port, _ := net.SplitHostPort(first.Addr().String())
	second, err := net.Listen("tcp", "127.0.0.2:"+port)
	must(t, err)
	var pools []*server.AgentPool
	for _, ln := range []net.Listener{first, second} {
		p := server.NewAgentPool(slogTo(e.log))
		go p.Serve(ln, serverTLS)
		t.Cleanup(p.Close)
		pools = append(pools, p)
	}
	agentCert, _ := e.clientCA.Issue(testpki.Options{CommonName: "api-agent", DNSNames: []string{"api-agent"}, Client: true})
	ac, _ := tls.X509KeyPair(agentCert.CertPEM(), agentCert.KeyPEM())
	res := &resolver{}
	res.set(nil, "127.0.0.1", "127.0.0.2")
	tunnels := &client.Tunnels{Edges: []string{net.JoinHostPort("edge.test", port)}, Log: slogTo(e.log), Lookup: res.lookup,
		Resolve: 50 * time.Millisecond, Handle: func(context.Context, tunnel.Header, net.Conn) {},
		TLS: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ac}, RootCAs: pool(tunnelCA)}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tunnels.Run(ctx) }()
	defer func() { cancel(); <-done }()

	sessions := func(i int) int { return len(pools[i].Agents()) }
	if !eventually(10*time.Second, func() bool { return sessions(0) == 1 && sessions(1) == 1 && tunnels.Connected() == 2 }) {
		t.Fatalf("sessions %d and %d, want one on each address:\n%s", sessions(0), sessions(1), e.log)
	}
	kept := pools[1].Agents()[0].Since

	res.set(errors.New("SERVFAIL"))
	calls := res.called()
	if !eventually(10*time.Second, func() bool { return res.called() >= calls+3 }) { // three failed rounds
		t.Fatalf("the resolver was asked %d times after it began to fail, want 3 rounds", res.called()-calls)
	}
	if sessions(0) != 1 || sessions(1) != 1 {
		t.Fatalf("a failed lookup cut sessions: %d and %d", sessions(0), sessions(1))
	}
	res.set(nil, "127.0.0.2")
	if !eventually(10*time.Second, func() bool { return sessions(0) == 0 }) {
		t.Fatalf("the session to the address gone from DNS stays:\n%s", e.log)
	}
	if a := pools[1].Agents(); len(a) != 1 || !a[0].Since.Equal(kept) {
		t.Errorf("the other address's session changed: %+v", a)
	}
	if st := tunnels.Sessions(); len(st) != 1 || st[0].Address != "127.0.0.2:"+port || !st[0].Connected {
		t.Errorf("sessions = %+v", st)
	}
	e.log.waitFor(t, "edge address no longer resolves", "address=127.0.0.1:"+port)
}
