package runtime

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/agent"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/tunnel"
)

// acceptTimes records when each connection was accepted.
type acceptTimes struct {
	net.Listener
	mu    sync.Mutex
	times []time.Time
	got   chan struct{} // one per accept
}

func (l *acceptTimes) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.times = append(l.times, time.Now())
		l.mu.Unlock()
		l.got <- struct{}{}
	}
	return c, err
}

// TestRejectedAgentBacksOff: an agent the edge refuses (its certificate is from a CA the
// edge does not trust) backs off exponentially instead of redialling every 150 ms, and
// logs the edge's reason, not "session ended".
func TestRejectedAgentBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tunnelCA, err := testpki.NewCA("tunnel CA", time.Time{}, time.Time{})
	must(t, err)
	edgeCert, err := tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	must(t, err)
	stranger, err := testpki.NewCA("not the agents' CA", time.Time{}, time.Time{})
	must(t, err)
	agentCert, err := stranger.Issue(testpki.Options{CommonName: "api-agent", DNSNames: []string{"api-agent"}, Client: true})
	must(t, err)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ln := &acceptTimes{Listener: raw, got: make(chan struct{}, 16)}
	agents := edge.NewAgentPool(slogTo(e.log))
	ec, _ := tls.X509KeyPair(edgeCert.CertPEM(), edgeCert.KeyPEM())
	go agents.Serve(ln, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(e.clientCA)})
	t.Cleanup(agents.Close)

	agentLog := &logBuffer{}
	ac, _ := tls.X509KeyPair(agentCert.CertPEM(), agentCert.KeyPEM())
	const base = 50 * time.Millisecond
	client := &agent.TunnelClient{Edge: raw.Addr().String(), Log: slogTo(agentLog), BackoffBase: base, BackoffMax: 10 * time.Second,
		Handle: func(context.Context, tunnel.Header, net.Conn) {},
		TLS:    &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ac}, RootCAs: pool(tunnelCA)}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); client.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const attempts = 6
	for range attempts {
		select {
		case <-ln.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent stopped dialling:\n%s", agentLog)
		}
	}
	ln.mu.Lock()
	gaps := make([]time.Duration, 0, attempts-1)
	for i := 1; i < len(ln.times); i++ {
		gaps = append(gaps, ln.times[i].Sub(ln.times[i-1]))
	}
	ln.mu.Unlock()
	// With jitter the nth wait lies in [base*2^(n-1)/2, base*2^(n-1)]: the fifth is at
	// least 8 times the base.
	if last := gaps[len(gaps)-1]; last < 8*base {
		t.Errorf("waits between attempts %v: the last is %s, want at least %s (exponential backoff)", gaps, last, 8*base)
	}
	agentLog.waitFor(t, "tunnel to the edge down", "remote error: tls: certificate required")
	if strings.Contains(agentLog.String(), "connected to the edge") {
		t.Error("a refused agent logs that it connected")
	}
}
