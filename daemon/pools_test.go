package daemon

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/internal/testpki"
)

// tlsEcho is a TLS upstream that echoes and reports each handshake's state.
func tlsEcho(t *testing.T, cfg *tls.Config) (string, chan tls.ConnectionState) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	states := make(chan tls.ConnectionState, 16)
	acceptEach(t, ln, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		states <- tc.ConnectionState()
		io.Copy(tc, tc)
	})
	return ln.Addr().String(), states
}

func serverConfig(t *testing.T, ca *testpki.Pair, o testpki.Options) *tls.Config {
	p, err := ca.Issue(o)
	must(t, err)
	c, err := tls.X509KeyPair(p.CertPEM(), p.KeyPEM())
	must(t, err)
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

// TestTLSUpstream: tls:// re-encrypts to the upstream, verified by name and chain, with
// tlsd's client certificate where the upstream asks for one, the client's ALPN offered
// onward, and sessions resumed; a wrong CA, a wrong name and an expired certificate are
// each refused with their reason.
func TestTLSUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	must(t, e.upstreamCA.WriteFiles(e.path("upstream-ca.crt"), ""))
	name := testpki.Options{CommonName: "billing.internal", DNSNames: []string{"billing.internal"}}
	good, states := tlsEcho(t, serverConfig(t, e.upstreamCA, name))
	expiredOpts := name
	expiredOpts.NotBefore, expiredOpts.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	expired, _ := tlsEcho(t, serverConfig(t, e.upstreamCA, expiredOpts))
	mtlsCfg := serverConfig(t, e.upstreamCA, name)
	mtlsCfg.ClientAuth, mtlsCfg.ClientCAs = tls.RequireAndVerifyClientCert, pool(e.clientCA)
	mtls, _ := tlsEcho(t, mtlsCfg)
	client, err := e.clientCA.Issue(testpki.Options{CommonName: "tlsd", Client: true})
	must(t, err)
	must(t, client.WriteFiles(e.path("tlsd-client.crt"), e.path("tlsd-client.key"), e.clientCA))
	ep := func(name, upstream, upstreamTLS string) string {
		return yamlEndpoint(name, name+".test", "tls://"+upstream, "edge", "  issuer: internal\n  alpn: [h2, http/1.1]\n") + "upstream_tls:\n" + upstreamTLS
	}
	verified := "  server_name: billing.internal\n  certificate_authorities: [upstream-ca.crt]\n"
	e.start(ep("ok", good, verified) +
		ep("wrongca", good, "  server_name: billing.internal\n  certificate_authorities: [clients-ca.crt]\n") +
		ep("wrongname", good, "  server_name: other.internal\n  certificate_authorities: [upstream-ca.crt]\n") +
		ep("expired", expired, verified) +
		ep("mtls", mtls, verified+"  certificate: {crt: tlsd-client.crt, key: tlsd-client.key}\n") +
		ep("nocert", mtls, verified))
	dial := func(sni string, protos ...string) error {
		return handshakeAndRead(e, &tls.Config{ServerName: sni, RootCAs: e.internalRoots(), NextProtos: protos})
	}
	must(t, dial("ok.test", "h2"))
	if st := <-states; st.NegotiatedProtocol != "" || st.ServerName != "billing.internal" {
		t.Errorf("the upstream saw SNI %q, ALPN %q", st.ServerName, st.NegotiatedProtocol)
	}
	must(t, dial("ok.test"))
	if st := <-states; !st.DidResume {
		t.Error("the second connection to the upstream did not resume its TLS session")
	}
	must(t, dial("mtls.test"))
	wants := []string{`tlsd_upstream_tls_handshake_duration_seconds_count{endpoint="ok",mode="edge"} 2`,
		`tlsd_upstream_connections_total{endpoint="ok",result="ok",upstream="` + good + `"} 2`, `tlsd_upstream_dial_duration_seconds_count{endpoint="mtls",mode="edge"} 1`}
	var metrics string
	if !eventually(5*time.Second, func() bool { // a connection is counted when it ends
		_, metrics = get(t, e.d.AdminHandler(), "/metrics")
		return !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(metrics, w) })
	}) {
		t.Errorf("/metrics lacks one of %q:\n%s", wants, metrics)
	}
	for _, c := range []struct{ sni, reason string }{
		{"wrongca.test", "certificate signed by unknown authority"},
		{"wrongname.test", "certificate is not for other.internal (it is for billing.internal)"},
		{"expired.test", "certificate expired or not yet valid"},
		{"nocert.test", "certificate required"}, // TLS 1.3: the upstream says so after its handshake
	} {
		if err := dial(c.sni); err == nil {
			t.Errorf("%s: served; want refused", c.sni)
		}
		e.log.waitFor(t, "connection failed", "sni="+c.sni, c.reason)
	}
}

// TestTLSUpstreamALPNOnward: the protocol the client negotiated at the edge is the one
// offered to the upstream.
func TestTLSUpstreamALPNOnward(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	must(t, e.upstreamCA.WriteFiles(e.path("upstream-ca.crt"), ""))
	cfg := serverConfig(t, e.upstreamCA, testpki.Options{CommonName: "h2.internal", DNSNames: []string{"h2.internal"}})
	cfg.NextProtos = []string{"h2", "http/1.1"}
	up, states := tlsEcho(t, cfg)
	e.start(yamlEndpoint("web", "web.test", "tls://"+up, "edge", "  issuer: internal\n  alpn: [h2, http/1.1]\n") +
		"upstream_tls:\n  server_name: h2.internal\n  certificate_authorities: [upstream-ca.crt]\n")
	for _, proto := range []string{"h2", "http/1.1"} {
		must(t, handshakeAndRead(e, &tls.Config{ServerName: "web.test", RootCAs: e.internalRoots(), NextProtos: []string{proto}}))
		if st := <-states; st.NegotiatedProtocol != proto {
			t.Errorf("client negotiated %s; the upstream got %q", proto, st.NegotiatedProtocol)
		}
	}
}

// stoppable is an echo upstream that can be stopped and started again on its address.
type stoppable struct {
	t    *testing.T
	addr string
	hits atomic.Int64
	mu   sync.Mutex
	ln   net.Listener
}

func newStoppable(t *testing.T) *stoppable {
	s := &stoppable{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *stoppable) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.hits.Add(1)
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

func (s *stoppable) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

func (s *stoppable) start() {
	ln, err := net.Listen("tcp", s.addr)
	must(s.t, err)
	s.serve(ln)
}

// echoVia opens a connection to sni, echoes one message and closes.
func echoVia(e *env, sni string) error {
	tc, err := e.dialTLS(&tls.Config{ServerName: sni, RootCAs: e.internalRoots()})
	if err != nil {
		return err
	}
	defer tc.Close()
	got, err := roundTrip(tc, []byte("ping"))
	if err == nil && string(got) != "ping" {
		err = fmt.Errorf("echo %q", got)
	}
	return err
}

func poolYAML(name, policy string, ups ...*stoppable) string {
	s := fmt.Sprintf("---\napiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s.test\nterminate_at: edge\ntls:\n  issuer: internal\n"+
		"load_balancing: %s\nupstreams:\n", name, name, policy)
	for _, u := range ups {
		s += "  - " + u.addr + "\n"
	}
	return s
}

// TestPoolFailover: a three-entry pool with one entry stopped mid-test: no client
// connection fails (the first failed dial marks the entry down and the connection tries
// the next), the stopped entry gets none while down, and it rejoins once back.
func TestPoolFailover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := newStoppable(t), newStoppable(t), newStoppable(t)
	e.start(poolYAML("shop", "round_robin", a, b, c))
	for range 6 {
		must(t, echoVia(e, "shop.test"))
	}
	if a.hits.Load() != 2 || b.hits.Load() != 2 || c.hits.Load() != 2 {
		t.Fatalf("round robin over 6 connections: %d, %d, %d", a.hits.Load(), b.hits.Load(), c.hits.Load())
	}
	b.stop()
	for i := range 30 {
		if err := echoVia(e, "shop.test"); err != nil {
			t.Fatalf("connection %d with one entry stopped: %v", i, err)
		}
	}
	if b.hits.Load() != 2 {
		t.Errorf("the stopped entry counted %d connections", b.hits.Load())
	}
	e.log.waitFor(t, "connection closed", "sni=shop.test") // served throughout
	var st []admin.UpstreamStatus
	for _, ep := range e.d.Status().Endpoints {
		st = ep.Upstreams
	}
	if len(st) != 3 || st[1].Up || st[1].LastError == "" || !st[0].Up {
		t.Errorf("/status upstreams = %+v, want the second one down with its error", st)
	}
	_, metrics := get(t, e.d.AdminHandler(), "/metrics")
	if want := `tlsd_upstream_up{endpoint="shop",upstream="` + b.addr + `"} 0`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	b.start()
	if !eventually(10*time.Second, func() bool { echoVia(e, "shop.test"); return b.hits.Load() > 2 }) {
		t.Error("the restarted entry never rejoined")
	}
}

// TestPoolPolicies: first is failover in list order; least_connections sends new
// connections to the entry with the fewest open; every entry down is refused at once.
func TestPoolPolicies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := newStoppable(t), newStoppable(t), newStoppable(t)
	x, y := newStoppable(t), newStoppable(t)
	e.start(poolYAML("first", "first", a, b) + poolYAML("least", "least_connections", c, x, y))
	for range 4 {
		must(t, echoVia(e, "first.test"))
	}
	if a.hits.Load() != 4 || b.hits.Load() != 0 {
		t.Fatalf("first: %d and %d, want all on the first entry", a.hits.Load(), b.hits.Load())
	}
	a.stop()
	must(t, echoVia(e, "first.test"))
	if b.hits.Load() != 1 {
		t.Errorf("first with its first entry stopped: the second got %d", b.hits.Load())
	}
	b.stop()
	if err := echoVia(e, "first.test"); err == nil { // its dial fails: both are down now
		t.Error("served with every entry stopped")
	}
	start := time.Now()
	if err := echoVia(e, "first.test"); err == nil {
		t.Error("served with every entry down")
	}
	e.log.waitFor(t, "connection failed", "sni=first.test", "every upstream is down")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refusal with every entry down took %s", took)
	}

	// Two long connections take two entries; every short one then goes to the third.
	for range 2 {
		tc, err := e.dialTLS(&tls.Config{ServerName: "least.test", RootCAs: e.internalRoots()})
		must(t, err)
		defer tc.Close()
		echoOnce(t, tc, "long") // held open until the test ends
	}
	free := []*stoppable{c, x, y}[0]
	for _, s := range []*stoppable{c, x, y} {
		if s.hits.Load() == 0 {
			free = s
		}
	}
	before := free.hits.Load()
	for range 6 {
		must(t, echoVia(e, "least.test"))
		if !eventually(5*time.Second, func() bool { return activeOf(e, "least") == 2 }) {
			t.Fatalf("%d connections open on least.test's entries, want the 2 long ones once the short one ended", activeOf(e, "least"))
		}
	}
	if got := free.hits.Load() - before; got != 6 {
		t.Errorf("least_connections sent %d of 6 short connections to the entry with none open", got)
	}
}

// TestPoolReloadUnderLoad: reordering a pool, and adding and removing entries, while
// connections flow drops none, touches no open connection, and keeps the health of the
// entries that stay.
func TestPoolReloadUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := newStoppable(t), newStoppable(t), newStoppable(t)
	e.start(poolYAML("shop", "round_robin", a, b, c))
	held, err := e.dialTLS(&tls.Config{ServerName: "shop.test", RootCAs: e.internalRoots()})
	must(t, err)
	defer held.Close()
	echoOnce(t, held, "before")
	c.stop()
	for range 3 {
		must(t, echoVia(e, "shop.test")) // one of them marks c down
	}
	stop := make(chan struct{})
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := echoVia(e, "shop.test"); err != nil {
				failed.Add(1)
				t.Errorf("connection %d during the reloads: %v", i, err)
			}
		}
	}()
	for _, order := range [][]*stoppable{{c, b, a}, {b, c}, {a, b, c}} {
		must(t, e.apply(poolYAML("shop", "round_robin", order...)))
		time.Sleep(50 * time.Millisecond) // let connections run on this generation
	}
	close(stop)
	wg.Wait()
	echoOnce(t, held, "after") // the connection of the first generation is untouched
	for _, ep := range e.d.Status().Endpoints {
		if ep.Name == "shop" && (len(ep.Upstreams) != 3 || ep.Upstreams[2].LastError == "") {
			t.Errorf("after the reloads: %+v, want c's failed dials remembered", ep.Upstreams)
		}
	}
	if failed.Load() > 0 {
		t.Errorf("%d connections failed during the reloads", failed.Load())
	}
}

// upstreamsOf is /status's view of an endpoint's upstreams.
func upstreamsOf(e *env, endpoint string) []admin.UpstreamStatus {
	for _, ep := range e.d.Status().Endpoints {
		if ep.Name == endpoint {
			return ep.Upstreams
		}
	}
	return nil
}

// TestActiveHealthChecks: with health_check, a stopped entry is found down before any
// client meets it, no client connection fails, it rejoins once its check passes; a lone
// upstream found down refuses at once; tls checks handshake with passthrough servers and
// verify tls:// upstreams.
func TestActiveHealthChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	must(t, e.upstreamCA.WriteFiles(e.path("upstream-ca.crt"), ""))
	a, b, c, lone := newStoppable(t), newStoppable(t), newStoppable(t), newStoppable(t)
	zk, other := e.tlsUpstream("zk.test"), e.tlsUpstream("zk.test")
	check := "health_check: {interval: 100ms, timeout: 500ms}\n"
	e.start(poolYAML("shop", "round_robin", a, b, c) + check +
		yamlEndpoint("lone", "lone.test", lone.addr, "edge", "  issuer: internal\n") + check +
		yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "health_check: {interval: 100ms, type: tls}\n" +
		yamlEndpoint("wrongca", "wrongca.test", "tls://"+other.addr(), "edge", "  issuer: internal\n") +
		"upstream_tls: {server_name: zk.test, certificate_authorities: [clients-ca.crt]}\nhealth_check: {interval: 100ms, type: tls}\n")
	up := func(endpoint string, i int) bool {
		u := upstreamsOf(e, endpoint)
		return len(u) > i && u[i].Up && !u[i].LastCheck.IsZero()
	}
	if !eventually(5*time.Second, func() bool { return up("zk", 0) && up("shop", 1) }) {
		t.Fatalf("checks never passed: zk %+v, shop %+v", upstreamsOf(e, "zk"), upstreamsOf(e, "shop"))
	}
	if !eventually(5*time.Second, func() bool { u := upstreamsOf(e, "wrongca"); return len(u) == 1 && !u[0].Up }) {
		t.Errorf("a tls:// upstream that does not verify passed its check: %+v", upstreamsOf(e, "wrongca"))
	}
	b.stop()
	if !eventually(5*time.Second, func() bool { return !up("shop", 1) }) {
		t.Fatal("the stopped entry was never found down")
	}
	for i := range 20 {
		if err := echoVia(e, "shop.test"); err != nil {
			t.Fatalf("connection %d with an entry found down: %v", i, err)
		}
	}
	b.start()
	if !eventually(5*time.Second, func() bool { return up("shop", 1) }) {
		t.Fatal("the restarted entry never passed its check")
	}
	lone.stop()
	if !eventually(5*time.Second, func() bool { return !up("lone", 0) }) {
		t.Fatal("the lone upstream was never found down")
	}
	start := time.Now()
	if err := echoVia(e, "lone.test"); err == nil {
		t.Fatal("served by an upstream found down")
	}
	e.log.waitFor(t, "connection failed", "sni=lone.test", "every upstream is down")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refused after %s", took)
	}
}

// TestSplitAgentDialsTLSUpstream: in a split deployment the agent re-encrypts to the
// upstream with the CA only it holds.
func TestSplitAgentDialsTLSUpstream(t *testing.T) {
	t.Parallel()
	upstreamCA, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	up, states := tlsEcho(t, serverConfig(t, upstreamCA, testpki.Options{CommonName: "billing.internal", DNSNames: []string{"billing.internal"}}))
	dir := t.TempDir()
	caFile := dir + "/upstream-ca.crt"
	must(t, upstreamCA.WriteFiles(caFile, ""))
	s := startSplit(t, yamlEndpoint("ed", "ed.test", "tls://"+up, "edge", "  issuer: internal\n")+
		"agent: api-agent\nupstream_tls: {server_name: billing.internal, certificate_authorities: ["+caFile+"]}\n", nil)
	tc, err := s.dialTLS(&tls.Config{ServerName: "ed.test", RootCAs: s.internalRoots()})
	must(t, err)
	defer tc.Close()
	if got, err := roundTrip(tc, []byte("through the agent")); err != nil || string(got) != "through the agent" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if st := <-states; st.ServerName != "billing.internal" {
		t.Errorf("the upstream saw SNI %q", st.ServerName)
	}
}
