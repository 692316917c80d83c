package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// greeter is an upstream that speaks first and closes its sending half at once, then
// reads whatever the client still sends: the reverse of the usual half-close.
type greeter struct {
	ln   net.Listener
	got  chan string
	wrap func(net.Conn) net.Conn
}

func newGreeter(t *testing.T, wrap func(net.Conn) net.Conn) *greeter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	g := &greeter{ln: ln, got: make(chan string, 4), wrap: wrap}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := c
			if wrap != nil {
				conn = wrap(c)
			}
			conn.Write([]byte("hello, then silence"))
			conn.(interface{ CloseWrite() error }).CloseWrite()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			data, _ := io.ReadAll(conn)
			g.got <- string(data)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return g
}

// TestHalfCloseFromUpstream: the upstream closes its sending side first; the client sees
// the end of the stream and can still send, and the upstream receives it. (The other
// direction, the client closing first, is what every echo test does.)
func TestHalfCloseFromUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plain := newGreeter(t, nil)
	leaf, err := e.upstreamCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	must(t, err)
	cert, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	must(t, err)
	secure := newGreeter(t, func(c net.Conn) net.Conn {
		return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
	})
	e.leaf(e.agentCA, "agent", "agent.test")
	e.start(yamlEndpoint("edge", "edge.test", plain.ln.Addr().String(), "edge", "  issuer: internal\n") +
		yamlEndpoint("agent", "agent.test", plain.ln.Addr().String(), "agent", "  certificate: {crt: agent.crt, key: agent.key}\n") +
		yamlEndpoint("zk", "zk.test", secure.ln.Addr().String(), "", ""))
	cases := []struct {
		sni   string
		roots *x509.CertPool
		g     *greeter
	}{{"edge.test", e.internalRoots(), plain}, {"agent.test", pool(e.agentCA), plain}, {"zk.test", pool(e.upstreamCA), secure}}
	for _, c := range cases {
		t.Run(c.sni, func(t *testing.T) {
			tc, err := e.dialTLS(&tls.Config{ServerName: c.sni, RootCAs: c.roots})
			must(t, err)
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			greeting, err := io.ReadAll(tc)
			if err != nil || string(greeting) != "hello, then silence" {
				t.Fatalf("greeting %q, %v", greeting, err)
			}
			if _, err := tc.Write([]byte("late words")); err != nil {
				t.Fatalf("write after the upstream's half-close: %v", err)
			}
			must(t, tc.CloseWrite())
			select {
			case got := <-c.g.got:
				if got != "late words" {
					t.Errorf("upstream received %q after its half-close", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream never received the client's bytes")
			}
		})
	}
}

// TestShutdownDrains: shutdown stops accepting at once, lets an open connection finish,
// and cuts it only when the timeout ends.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tc, err := w.dialTLS(&tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()})
	must(t, err)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	addr := w.addr()
	go func() { done <- w.d.Shutdown(ctx) }()
	refused := func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}
	if !eventually(time.Second, refused) {
		t.Error("listener still accepts after Shutdown began")
	}
	// The open connection still works while draining.
	tc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := tc.Write([]byte("drain")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "drain" {
		t.Fatalf("echo while draining: %q, %v", buf, err)
	}
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "closed 1 open connections") {
		t.Errorf("Shutdown = %v, want it to report the one connection it cut", err)
	}
}

// TestIndependentClients checks tlsd with clients that share no code with it.
func TestIndependentClients(t *testing.T) {
	t.Parallel()
	web := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "plaintext %s %s from tlsd", r.Method, r.URL.Path)
	}))
	defer web.Close()
	w := newEnv(t)
	w.start(yamlEndpoint("web", "web.test", web.Listener.Addr().String(), "edge", "  issuer: internal\n"))
	ca, err := w.internalCAFile()
	must(t, err)
	_, port, _ := net.SplitHostPort(w.addr())
	t.Run("openssl s_client", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Fatal("openssl is required (apt-get install openssl)")
		}
		// -ign_eof: keep reading after stdin ends, until the HTTP/1.0 server closes.
		cmd := exec.Command("openssl", "s_client", "-connect", w.addr(), "-servername", "web.test",
			"-CAfile", ca, "-verify_return_error", "-verify_hostname", "web.test", "-brief", "-ign_eof")
		cmd.Stdin = strings.NewReader("GET /via-openssl HTTP/1.0\r\nHost: web.test\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") || !strings.Contains(string(out), "plaintext GET /via-openssl from tlsd") {
			t.Errorf("openssl s_client: %v\n%s", err, out)
		}
	})
	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatal("curl is required (apt-get install curl)")
		}
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "--cacert", ca,
			"--resolve", "web.test:"+port+":127.0.0.1", "https://web.test:"+port+"/via-curl").CombinedOutput()
		if err != nil || string(out) != "plaintext GET /via-curl from tlsd" {
			t.Errorf("curl: %v\n%s", err, out)
		}
	})
}
