package daemon

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/tunnel/server"
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
	stranger, err := testpki.NewCA("not the agents' CA", time.Time{}, time.Time{})
	must(t, err)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ln := &acceptTimes{Listener: raw, got: make(chan struct{}, 16)}
	agentTLS := edgeWithTunnel(t, e, ln, stranger)

	agentLog := &logBuffer{}
	const base = 50 * time.Millisecond
	client := &client.TunnelClient{Edge: raw.Addr().String(), Log: slogTo(agentLog), BackoffBase: base, BackoffMax: 10 * time.Second,
		Handle: func(context.Context, tunnel.Header, net.Conn) {}, TLS: agentTLS}
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

// edgeWithTunnel serves an edge's agent pool on ln, trusting agents whose certificates
// env's client CA signs, and returns the TLS config of an agent called api-agent whose
// certificate agentCA signs.
func edgeWithTunnel(t *testing.T, e *env, ln net.Listener, agentCA *testpki.Pair) *tls.Config {
	t.Helper()
	tunnelCA, err := testpki.NewCA("tunnel CA", time.Time{}, time.Time{})
	must(t, err)
	edgeCert, err := tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	must(t, err)
	agentCert, err := agentCA.Issue(testpki.Options{CommonName: "api-agent", DNSNames: []string{"api-agent"}, Client: true})
	must(t, err)
	agents := server.NewAgentPool(slogTo(e.log))
	ec, _ := tls.X509KeyPair(edgeCert.CertPEM(), edgeCert.KeyPEM())
	go agents.Serve(ln, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool(e.clientCA)})
	t.Cleanup(agents.Close)
	ac, _ := tls.X509KeyPair(agentCert.CertPEM(), agentCert.KeyPEM())
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ac}, RootCAs: pool(tunnelCA)}
}

// edgeTunnel is edgeWithTunnel on a new loopback listener, for an agent the edge trusts.
func edgeTunnel(t *testing.T, e *env) (addr string, agentTLS *tls.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	return ln.Addr().String(), edgeWithTunnel(t, e, ln, e.clientCA)
}

// rogueSession dials the edge as the agent and returns the raw yamux session.
func rogueSession(t *testing.T, addr string, cfg *tls.Config) *yamux.Session {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	must(t, err)
	s, err := yamux.Server(c, tunnel.MuxConfig(0))
	must(t, err)
	t.Cleanup(func() { s.Close() })
	if _, err := s.Ping(); err != nil {
		t.Fatalf("the edge did not take the session: %v", err)
	}
	return s
}

// TestAgentOpenedStreamsEndTheSession: an agent credential cannot make the edge queue
// streams: the first stream an agent opens closes its session.
func TestAgentOpenedStreamsEndTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr, cfg := edgeTunnel(t, e)
	s := rogueSession(t, addr, cfg)
	before := heapInUse()
	opened := 0
	payload := make([]byte, 64<<10)
	for ; opened < 10000; opened++ {
		st, err := s.OpenStream()
		if err != nil {
			break
		}
		st.Write(payload)
	}
	e.log.waitFor(t, "agent opened a stream, which agents never do; closing its session", "agent=api-agent")
	<-s.CloseChan()
	t.Logf("the agent opened %d streams before its session closed; heap in use %+.1f MB", opened, float64(heapInUse()-before)/(1<<20))
	if opened == 10000 {
		t.Error("10,000 agent-opened streams and the session still stands")
	}
}

// TestSessionsPerAgentBounded: one agent name holds at most MaxSessionsPerAgent sessions.
func TestSessionsPerAgentBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr, cfg := edgeTunnel(t, e)
	for range server.MaxSessionsPerAgent {
		rogueSession(t, addr, cfg)
	}
	c, err := tls.Dial("tcp", addr, cfg)
	must(t, err)
	s, err := yamux.Server(c, tunnel.MuxConfig(0))
	must(t, err)
	defer s.Close()
	if _, err := s.Ping(); err == nil {
		t.Errorf("session %d of one agent name was accepted", server.MaxSessionsPerAgent+1)
	}
	e.log.waitFor(t, "agent session refused", "the most one name may hold")
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
