package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/internal/testport"
)

// clientCert makes a client certificate pair signed by ca.
func clientCert(t *testing.T, ca *testpki.Pair, o testpki.Options) tls.Certificate {
	t.Helper()
	o.Client = true
	p, err := ca.Issue(o)
	must(t, err)
	c, err := tls.X509KeyPair(p.CertPEM(), p.KeyPEM())
	must(t, err)
	return c
}

// handshakeAndRead does what a client does to learn whether it was accepted: in TLS 1.3
// a rejected client certificate shows only on the first read.
func handshakeAndRead(e *env, cfg *tls.Config) error {
	tc, err := e.dialTLS(cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err = io.ReadFull(tc, buf)
	return err
}

// TestHandshakeRejections: each way a client can be wrong is refused, the client sees a
// TLS error, and the log line says why in words.
func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	roots := w.internalRoots()
	now := time.Now()
	mallory := clientCert(t, w.agentCA, testpki.Options{CommonName: "mallory"})
	cases := []struct {
		name      string
		cfg       *tls.Config
		clientErr string // substring of the client's error
		reason    string // substring of the log line's reason
	}{
		{"no client certificate", &tls.Config{ServerName: "mtls.test", RootCAs: roots},
			"certificate required", "client sent no certificate"},
		{"client certificate from another CA", &tls.Config{ServerName: "mtls.test", RootCAs: roots,
			// Go's client would hold back a certificate the server's CA list does not name;
			// send it regardless, as a misconfigured or hostile client does.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &mallory, nil }},
			"unknown certificate authority", `mallory\" signed by unknown authority \"agent CA`},
		{"expired client certificate", &tls.Config{ServerName: "mtls.test", RootCAs: roots,
			Certificates: []tls.Certificate{clientCert(t, w.clientCA, testpki.Options{CommonName: "old",
				NotBefore: now.AddDate(-2, 0, 0), NotAfter: now.AddDate(-1, 0, 0)})}},
			"expired certificate", `old\" expired or not yet valid`},
		{"TLS 1.1 client against the default minimum", &tls.Config{ServerName: "edge.test", RootCAs: roots,
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			"protocol version", "client offered TLS 1.1 at most, endpoint requires TLS 1.2"},
		{"TLS 1.1 client at the agent", &tls.Config{ServerName: "agent.test", RootCAs: pool(w.agentCA),
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			"protocol version", "client offered TLS 1.1 at most, endpoint requires TLS 1.2"},
		{"TLS 1.2 client against a 1.3 minimum", &tls.Config{ServerName: "edge13.test", RootCAs: roots,
			MaxVersion: tls.VersionTLS12},
			"protocol version", "client offered TLS 1.2 at most, endpoint requires TLS 1.3"},
		{"unknown SNI", &tls.Config{ServerName: "nope.test", InsecureSkipVerify: true},
			"unrecognized name", "unknown SNI nope.test"},
		{"no SNI", &tls.Config{InsecureSkipVerify: true},
			"unrecognized name", "client sent no SNI"},
		{"wildcard matches one label only", &tls.Config{ServerName: "a.b.wild.test", InsecureSkipVerify: true},
			"unrecognized name", "unknown SNI a.b.wild.test"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := handshakeAndRead(w.env, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.clientErr) {
				t.Errorf("client error = %v, want one containing %q", err, c.clientErr)
			}
			w.log.waitFor(t, "connection failed", "reason=", c.reason)
		})
	}
	t.Run("valid client certificate", func(t *testing.T) {
		cert := clientCert(t, w.clientCA, testpki.Options{CommonName: "alice", DNSNames: []string{"alice.clients.test"}})
		must(t, handshakeAndRead(w.env, &tls.Config{ServerName: "mtls.test", RootCAs: roots, Certificates: []tls.Certificate{cert}}))
		w.log.waitFor(t, "connection closed", "endpoint=mtls", "client_identity=", "CN=alice", "DNS:alice.clients.test")
	})
}

// TestGarbageInsteadOfClientHello: a client that speaks something else is closed at once.
func TestGarbageInsteadOfClientHello(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	c, err := net.Dial("tcp", w.addr())
	must(t, err)
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("read after garbage: %v (want a prompt close)", err)
	}
	w.log.waitFor(t, "connection failed", "did not start with a TLS record")
}

// TestHugeSNI: a server name longer than a DNS name can be is refused with
// unrecognized_name, and the log line it costs stays small.
func TestHugeSNI(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := len(w.log.String())
	name := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60000)
	raw, err := net.Dial("tcp", w.addr())
	must(t, err)
	defer raw.Close()
	tc := tls.Client(raw, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("handshake with a 60,000-byte SNI: %v, want unrecognized_name", err)
	}
	line := w.log.waitFor(t, "connection failed", "longer than a DNS name can be")
	if added := len(w.log.String()) - before; added > 2000 {
		t.Errorf("one connection with a 60,000-byte SNI added %d bytes to the log:\n%.300s", added, line)
	}
}

// tinySegments writes every byte in its own TCP segment (Go sets TCP_NODELAY).
type tinySegments struct{ net.Conn }

func (c tinySegments) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// TestClientHelloInTinySegments: a ClientHello cut into one-byte segments still routes.
func TestClientHelloInTinySegments(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, c := range []struct {
		sni string
		cfg *tls.Config
	}{{"zk.test", &tls.Config{ServerName: "zk.test", RootCAs: pool(w.upstreamCA)}},
		{"edge.test", &tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()}}} {
		raw, err := net.Dial("tcp", w.addr())
		must(t, err)
		tc := tls.Client(tinySegments{raw}, c.cfg)
		got, err := roundTrip(tc, []byte("split"))
		if err != nil || string(got) != "split" {
			t.Errorf("%s: echo %q, %v", c.sni, got, err)
		}
		tc.Close()
	}
}

// TestSilentConnections: 1,000 clients that send nothing do not stop a good client from
// being served, and all of them are closed at the handshake deadline.
func TestSilentConnections(t *testing.T) {
	t.Parallel()
	const n = 1000
	timeout := time.Second
	w := newWorld(t, func(o *Options) { o.HandshakeTimeout = timeout })
	silent := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", w.addr())
		must(t, err)
		silent = append(silent, c)
	}
	goodStart := time.Now()
	tc, err := w.dialTLS(&tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()})
	must(t, err)
	got, err := roundTrip(tc, []byte("still served"))
	tc.Close()
	if err != nil || string(got) != "still served" {
		t.Fatalf("good client: %q, %v", got, err)
	}
	if d := time.Since(goodStart); d > timeout/2 {
		t.Errorf("good client took %s with %d silent connections open", d, n)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var late []string
	for i, c := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(start.Add(timeout + 3*time.Second))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				late = append(late, fmt.Sprint(i))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(late) > 0 {
		t.Errorf("%d silent connections still open 3 s after the handshake deadline", len(late))
	}
	w.log.waitFor(t, "connection failed", "no complete ClientHello before the handshake timeout")
}

// freePort returns a loopback address nothing listens on: for an upstream that must
// refuse, and for servers in other processes (Pebble), which must be told their ports.
// tlsd's own listeners are bound in advance instead (env.preBind).
func freePort(t *testing.T) string { return testport.Unused(t) }

// TestUpstreamFailures: an upstream that refuses, or that accepts and never answers,
// costs the client a prompt close and the log says why.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refused := freePort(t)
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var muteConns sync.WaitGroup
	defer func() { mute.Close(); muteConns.Wait() }()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			muteConns.Add(1)
			go func() { defer muteConns.Done(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	e.start(yamlEndpoint("refused-zk", "refused-zk.test", refused, "", "")+
		yamlEndpoint("refused-edge", "refused-edge.test", refused, "edge", "  issuer: internal\n")+
		yamlEndpoint("mute-zk", "mute-zk.test", mute.Addr().String(), "", ""),
		func(o *Options) { o.HandshakeTimeout = time.Second })
	cases := []struct {
		sni    string
		reason string
		within time.Duration
	}{
		{"refused-zk.test", "upstream " + refused + " refused the connection", 500 * time.Millisecond},
		{"refused-edge.test", "upstream " + refused + " refused the connection", 500 * time.Millisecond},
		{"mute-zk.test", "sent nothing within 1s of the ClientHello", 2 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.sni, func(t *testing.T) {
			start := time.Now()
			err := handshakeAndRead(e, &tls.Config{ServerName: c.sni, RootCAs: e.internalRoots()})
			if err == nil {
				t.Fatal("client was served by a broken upstream")
			}
			if d := time.Since(start); d > c.within {
				t.Errorf("client waited %s for the close, want under %s", d, c.within)
			}
			e.log.waitFor(t, "connection failed", "sni="+c.sni, c.reason)
		})
	}
}
