package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/schema"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// certmagic leaves these behind by design: a goroutine that refreshes each lock
		// file until it sees the file gone (it sleeps in between), and its package-level
		// rate limiter per ACME directory.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
	)
}

// logBuffer collects log output for assertions; safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor polls the log until it contains every part, or fails after a few seconds.
func (l *logBuffer) waitFor(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(l.String(), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", parts, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond until it holds or timeout passes, and says whether it held.
func eventually(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// env is one test's world: a PKI, upstreams, and a running tlsd.
type env struct {
	t        testing.TB
	dir      string
	log      *logBuffer
	d        *Daemon
	stateDir string
	sockets  *sockets // listeners bound for tlsd before it starts

	upstreamCA *testpki.Pair // signs the passthrough upstream's certificate
	agentCA    *testpki.Pair // signs the agent-terminated endpoint's certificate
	clientCA   *testpki.Pair // signs client certificates for mutual TLS
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), log: &logBuffer{}, sockets: &sockets{byAddr: map[string]net.Listener{}}}
	e.stateDir = filepath.Join(e.dir, "state")
	var err error
	e.upstreamCA, err = testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	must(t, err)
	e.agentCA, err = testpki.NewCA("agent CA", time.Time{}, time.Time{})
	must(t, err)
	e.clientCA, err = testpki.NewCA("clients CA", time.Time{}, time.Time{})
	must(t, err)
	must(t, e.agentCA.WriteFiles(e.path("agent-ca.crt"), ""))
	must(t, e.clientCA.WriteFiles(e.path("clients-ca.crt"), ""))
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// leaf writes a certificate for names signed by ca to NAME.crt/NAME.key.
func (e *env) leaf(ca *testpki.Pair, file string, names ...string) *testpki.Pair {
	p, err := ca.Issue(testpki.Options{CommonName: names[0], DNSNames: names})
	must(e.t, err)
	must(e.t, p.WriteFiles(e.path(file+".crt"), e.path(file+".key"), ca))
	return p
}

// start loads config (YAML documents) from the test directory and starts tlsd on an
// ephemeral loopback port.
func (e *env) start(config string, opts ...func(*Options)) {
	e.t.Helper()
	must(e.t, os.WriteFile(e.path("endpoints.yaml"), []byte(config), 0o644))
	res, err := schema.Load(schema.Options{}, e.path("endpoints.yaml"))
	must(e.t, err)
	if res.Diagnostics.HasErrors() {
		e.t.Fatalf("config: %v", res.Diagnostics)
	}
	o := Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, HandshakeTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(e.log, nil)), Bind: e.sockets.bind}
	for _, f := range opts {
		f(&o)
	}
	e.d, err = Start(res.Config, o)
	must(e.t, err)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.d.Shutdown(ctx); err != nil {
			e.t.Errorf("shutdown: %v", err)
		}
		if e.t.Failed() {
			e.t.Logf("tlsd's log:\n%s", e.log.String()) // what a failure on a loaded machine needs to be understood
		}
	})
}

func (e *env) addr() string { return e.d.Addr("").String() }

// sockets hands tlsd listeners bound on :0 in advance, so a test can name a listen
// address before tlsd runs without picking a port number by closing a listener.
type sockets struct {
	mu     sync.Mutex // guards byAddr
	byAddr map[string]net.Listener
}

// preBind binds a loopback listener for tlsd and returns its address, to put in
// `listen:` or --listen.
func (e *env) preBind() string {
	ln, err := edge.Listen(context.Background(), "127.0.0.1:0")
	must(e.t, err)
	e.t.Cleanup(func() { ln.Close() }) // in case tlsd never took it
	e.sockets.mu.Lock()
	defer e.sockets.mu.Unlock()
	e.sockets.byAddr[ln.Addr().String()] = ln
	return ln.Addr().String()
}

// bind is Options.Bind: a pre-bound listener once, else a new one (a restart re-binding
// its own address).
func (s *sockets) bind(ctx context.Context, addr string) (net.Listener, error) {
	s.mu.Lock()
	ln := s.byAddr[addr]
	delete(s.byAddr, addr)
	s.mu.Unlock()
	if ln != nil {
		return ln, nil
	}
	return edge.Listen(ctx, addr)
}

// internalRoots is a pool with the internal issuer's root.
func (e *env) internalRoots() *x509.CertPool {
	ca, err := localca.Open(e.stateDir, nil)
	must(e.t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())
	return pool
}

func pool(cas ...*testpki.Pair) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// dialTLS connects a crypto/tls client to tlsd.
func (e *env) dialTLS(cfg *tls.Config) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", e.addr(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// acceptEach serves every connection ln accepts with handle, on a goroutine each, until
// the test ends (and then closes ln).
func acceptEach(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// echoServer accepts connections and echoes every byte back, closing its write half
// when the client closes its own. wrap, if set, turns each accepted socket into the
// connection to echo on (e.g. a TLS server); raw receives a copy of every byte read
// from the socket.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	raw  bytes.Buffer
	wrap func(net.Conn) net.Conn
}

func newEchoServer(t testing.TB, wrap func(net.Conn) net.Conn) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	s := &echoServer{ln: ln, wrap: wrap}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) rawBytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.raw.Bytes())
}

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			var conn net.Conn = &tapConn{Conn: c, s: s}
			if s.wrap != nil {
				conn = s.wrap(conn)
			}
			io.Copy(conn, conn)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			// Let the last bytes and the close_notify reach the client before closing.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
		}()
	}
}

// tapConn copies what the upstream reads into the echo server's record.
type tapConn struct {
	net.Conn
	s *echoServer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.mu.Lock()
	c.s.raw.Write(p[:n])
	c.s.mu.Unlock()
	return n, err
}

// tlsUpstream makes an echo server that terminates TLS itself with a certificate for
// names from the upstream CA: the zero-knowledge endpoint's real server.
func (e *env) tlsUpstream(names ...string) *echoServer {
	leaf, err := e.upstreamCA.Issue(testpki.Options{CommonName: names[0], DNSNames: names})
	must(e.t, err)
	cert, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	must(e.t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return newEchoServer(e.t, func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
}

// roundTrip writes msg, half-closes, and reads the echo to EOF.
func roundTrip(c net.Conn, msg []byte) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, rerr := io.ReadAll(c)
	return got, errors.Join(<-errc, rerr)
}

func yamlEndpoint(name, domain, upstream, mode, tlsBlock string) string {
	s := fmt.Sprintf("---\napiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %q\nupstream: %s\n", name, domain, upstream)
	if mode != "" {
		s += "terminate_at: " + mode + "\n"
	}
	if tlsBlock != "" {
		s += "tls:\n" + tlsBlock
	}
	return s
}

// internalCAFile writes the internal issuer's root to a file for outside clients.
func (e *env) internalCAFile() (string, error) {
	ca, err := localca.Open(e.stateDir, nil)
	if err != nil {
		return "", err
	}
	p := e.path("internal-root.crt")
	return p, os.WriteFile(p, ca.RootPEM(), 0o644)
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func loadConfig(t testing.TB, paths ...string) *schema.Config {
	t.Helper()
	res, err := schema.Load(schema.Options{}, paths...)
	must(t, err)
	if res.Config == nil {
		t.Fatalf("config: %v", res.Diagnostics)
	}
	return res.Config
}
