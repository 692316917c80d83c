package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/schema"
)

// apply loads config into the test directory and applies it to the running daemon.
func (e *env) apply(config string) error {
	e.t.Helper()
	must(e.t, os.WriteFile(e.path("endpoints.yaml"), []byte(config), 0o644))
	res, err := schema.Load(schema.Options{}, e.path("endpoints.yaml"))
	must(e.t, err)
	if res.Config == nil {
		e.t.Fatalf("config: %v", res.Diagnostics)
	}
	_, err = e.d.Apply(res.Config)
	return err
}

// echoOnce writes msg and reads it back on an open connection.
func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write on a long-lived connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo on a long-lived connection: %q, %v", buf, err)
	}
	c.SetDeadline(time.Time{})
}

// TestReloadKeepsConnections applies a new generation that removes one endpoint, flips
// another's termination mode and leaves a third alone: open connections of all three
// carry on; new connections see the new generation.
func TestReloadKeepsConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plain, zk := newEchoServer(t, nil), e.tlsUpstream("zk.test", "flip.test")
	e.leaf(e.agentCA, "agent", "agent.test")
	keep := yamlEndpoint("keep", "keep.test", plain.addr(), "edge", "  issuer: internal\n")
	e.start(keep +
		yamlEndpoint("gone", "zk.test", zk.addr(), "", "") +
		yamlEndpoint("flip", "flip.test", zk.addr(), "", ""))
	roots := e.internalRoots()
	sessions := tls.NewLRUClientSessionCache(8)
	keepConn, err := e.dialTLS(&tls.Config{ServerName: "keep.test", RootCAs: roots, ClientSessionCache: sessions})
	must(t, err)
	defer keepConn.Close()
	echoOnce(t, keepConn, "warm up the session cache")
	goneConn, err := e.dialTLS(&tls.Config{ServerName: "zk.test", RootCAs: pool(e.upstreamCA)})
	must(t, err)
	defer goneConn.Close()
	flipConn, err := e.dialTLS(&tls.Config{ServerName: "flip.test", RootCAs: pool(e.upstreamCA)})
	must(t, err)
	defer flipConn.Close()

	gen := e.d.Generation()
	must(t, e.apply(keep+yamlEndpoint("flip", "flip.test", plain.addr(), "edge", "  issuer: internal\n")))
	if e.d.Generation() != gen+1 {
		t.Fatalf("generation %d, want %d", e.d.Generation(), gen+1)
	}
	for _, c := range []net.Conn{keepConn, goneConn, flipConn} {
		echoOnce(t, c, "still here after the reload")
	}
	// New connections: the removed endpoint is refused, the flipped one is now
	// terminated by tlsd, the unchanged one resumes its session (same TLS config).
	if err := handshakeAndRead(e, &tls.Config{ServerName: "zk.test", RootCAs: pool(e.upstreamCA)}); err == nil ||
		!strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("removed endpoint: %v, want unrecognized name", err)
	}
	fc, err := e.dialTLS(&tls.Config{ServerName: "flip.test", RootCAs: roots})
	must(t, err)
	if issuer := fc.ConnectionState().PeerCertificates[0].Issuer.CommonName; !strings.HasPrefix(issuer, "tlsd local CA") {
		t.Errorf("flipped endpoint presents a certificate from %q", issuer)
	}
	fc.Close()
	kc, err := e.dialTLS(&tls.Config{ServerName: "keep.test", RootCAs: roots, ClientSessionCache: sessions})
	must(t, err)
	if !kc.ConnectionState().DidResume {
		t.Error("unchanged endpoint lost its session tickets across the reload")
	}
	kc.Close()
}

func TestUnchangedConfigIsANoop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	gen := w.d.Generation()
	data, err := os.ReadFile(w.path("endpoints.yaml"))
	must(t, err)
	// The same endpoints, reordered: still no change.
	docs := strings.Split(string(data), "---\n")
	for i, j := 0, len(docs)-1; i < j; i, j = i+1, j-1 {
		docs[i], docs[j] = docs[j], docs[i]
	}
	must(t, w.apply(strings.Join(docs, "---\n")))
	if w.d.Generation() != gen {
		t.Errorf("generation went from %d to %d on an unchanged configuration", gen, w.d.Generation())
	}
}

// TestPortConflictKeepsGeneration: a new listener that cannot be bound discards the
// whole new generation, endpoints of other listeners included.
func TestPortConflictKeepsGeneration(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer busy.Close()
	gen := w.d.Generation()
	data, _ := os.ReadFile(w.path("endpoints.yaml"))
	next := strings.ReplaceAll(string(data), "name: zk\n", "name: zk-renamed\n") +
		yamlEndpoint("conflict", "conflict.test", w.plain.addr(), "", "") + "listen: " + busy.Addr().String() + "\n"
	err = w.apply(next)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("apply = %v, want a bind error", err)
	}
	if w.d.Generation() != gen {
		t.Errorf("generation moved to %d after a failed apply", w.d.Generation())
	}
	st := w.d.Status()
	if st.LastAttempt.OK || !strings.Contains(st.LastAttempt.Error, "address already in use") {
		t.Errorf("status last attempt = %+v", st.LastAttempt)
	}
	for _, e := range st.Endpoints {
		if e.Name == "zk-renamed" {
			t.Error("part of the failed generation is being served")
		}
	}
	tc, err := w.dialTLS(&tls.Config{ServerName: "zk.test", RootCAs: pool(w.upstreamCA)})
	must(t, err)
	tc.Close()
}

// TestDrainTimeoutCutsOnlyStaleConnections: with --drain-timeout, connections of a
// removed endpoint end after it; those of an unchanged endpoint do not. Terminated
// connections and passthrough ones (idle in the relay loop, no goroutine) alike.
func TestDrainTimeoutCutsOnlyStaleConnections(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"edge", "upstream"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			var up *echoServer
			var roots *x509.CertPool
			tlsBlock := "  issuer: internal\n"
			if mode == "upstream" {
				up, roots, tlsBlock = e.tlsUpstream("keep.test", "gone.test"), pool(e.upstreamCA), ""
			} else {
				up = newEchoServer(t, nil)
			}
			keep := yamlEndpoint("keep", "keep.test", up.addr(), mode, tlsBlock)
			e.start(keep+yamlEndpoint("gone", "gone.test", up.addr(), mode, tlsBlock),
				func(o *Options) { o.DrainTimeout = 300 * time.Millisecond })
			if roots == nil {
				roots = e.internalRoots()
			}
			keepConn, err := e.dialTLS(&tls.Config{ServerName: "keep.test", RootCAs: roots})
			must(t, err)
			defer keepConn.Close()
			goneConn, err := e.dialTLS(&tls.Config{ServerName: "gone.test", RootCAs: roots})
			must(t, err)
			defer goneConn.Close()
			echoOnce(t, goneConn, "before")
			must(t, e.apply(keep))
			echoOnce(t, goneConn, "draining")
			// The drain timeout cuts the connection: the read ends with it.
			goneConn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var ne net.Error
			if _, err := goneConn.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("removed endpoint's connection survived the drain timeout (read: %v)", err)
			}
			echoOnce(t, keepConn, "unchanged endpoints are never cut")
			e.log.waitFor(t, "drain timeout: closed connections of removed or changed endpoints", "closed=1")
			e.log.waitFor(t, "connection closed", "endpoint=gone")
		})
	}
}

// TestListenerMoveDrainsOldListener: an endpoint moving to another listener closes the
// old listener for new connections while its open one carries on.
func TestListenerMoveDrainsOldListener(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plain := newEchoServer(t, nil)
	e.start(yamlEndpoint("a", "a.test", plain.addr(), "edge", "  issuer: internal\n"))
	oldAddr := e.addr()
	c, err := e.dialTLS(&tls.Config{ServerName: "a.test", RootCAs: e.internalRoots()})
	must(t, err)
	defer c.Close()
	newListen := e.preBind()
	must(t, e.apply(yamlEndpoint("a", "a.test", plain.addr(), "edge", "  issuer: internal\n")+"listen: "+newListen+"\n"))
	if _, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		t.Error("the old listener still accepts")
	}
	echoOnce(t, c, "on the old listener, draining")
	nc, err := tls.Dial("tcp", newListen, &tls.Config{ServerName: "a.test", RootCAs: e.internalRoots()})
	must(t, err)
	nc.Close()
	if e.d.Addr("") != nil {
		t.Error("the default listener is still part of the generation")
	}
}

// TestDrainTimeoutPerConnection: a connection gets its whole drain timeout from the moment
// it became stale, whatever later reloads do. Two reloads within one drain timeout: the
// first one's timer must not cut the connection the second made stale.
func TestDrainTimeoutPerConnection(t *testing.T) {
	t.Parallel()
	const drain = 800 * time.Millisecond
	e := newEnv(t)
	up := newEchoServer(t, nil)
	ep := func(name string) string { return endpointFile(name, up.addr()) }
	e.start(ep("a")+ep("b")+ep("c"), func(o *Options) { o.DrainTimeout = drain })
	early, err := e.dialTLS(&tls.Config{ServerName: "a.test", RootCAs: e.internalRoots()})
	must(t, err)
	defer early.Close()
	conn, err := e.dialTLS(&tls.Config{ServerName: "b.test", RootCAs: e.internalRoots()})
	must(t, err)
	defer conn.Close()
	must(t, e.apply(ep("b")+ep("c"))) // the first reload: a goes (its connection drains), b stays
	time.Sleep(drain / 2)             // the second reload comes within the first one's drain
	stale := time.Now()               // b goes stale during this apply: its drain starts after this
	must(t, e.apply(ep("c")))
	var st admin.Status
	want := []admin.DrainingStatus{{Name: "a", ActiveConnections: 1}, {Name: "b", ActiveConnections: 1}}
	if !eventually(time.Second, func() bool { st = e.d.Status(); return slices.Equal(st.Draining, want) }) {
		t.Errorf("/status draining = %+v, want %+v", st.Draining, want)
	}
	e.log.waitFor(t, "generation applied", "generation=3")
	e.log.waitFor(t, "drain timeout: closed connections of removed or changed endpoints", "closed=1") // a's
	echoOnce(t, conn, "b has drained for half its timeout: still open")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stale connection was never cut (read: %v)", err)
	}
	if took := time.Since(stale); took < drain {
		t.Errorf("cut %s after it became stale, before its %s drain timeout", took.Round(time.Millisecond), drain)
	}
}
