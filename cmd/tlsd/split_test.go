package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// splitWorld is an edge and agents as separate tlsd processes on loopback, each with its
// own state and its own copy of the configuration.
type splitWorld struct {
	t                          *testing.T
	dir                        string
	listen, tunnel, edgeAdmin  string
	tunnelCA, agentCA, sitesCA *testpki.Pair
	edgeDir, agentDir          string
	edge                       *exec.Cmd
	edgeOut                    *lockedBuffer
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// echo serves a plain echo, or a TLS echo with a certificate for name, on loopback.
func echo(t *testing.T, tlsCfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var conn net.Conn = c
				if tlsCfg != nil {
					conn = tls.Server(c, tlsCfg)
				}
				io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

func newSplitWorld(t *testing.T) *splitWorld {
	w := &splitWorld{t: t, dir: t.TempDir(), listen: freeAddr(t), tunnel: freeAddr(t), edgeAdmin: freeAddr(t)}
	var err error
	for _, p := range []**testpki.Pair{&w.tunnelCA, &w.agentCA, &w.sitesCA} {
		*p, err = testpki.NewCA(fmt.Sprintf("CA %p", p), time.Time{}, time.Time{})
		mustT(t, err)
	}
	w.edgeDir, w.agentDir = filepath.Join(w.dir, "edge-checkout"), filepath.Join(w.dir, "agent-checkout")
	mustT(t, os.MkdirAll(w.edgeDir, 0o755))
	mustT(t, os.MkdirAll(w.agentDir, 0o755))
	edgeCert, _ := w.tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	mustT(t, edgeCert.WriteFiles(w.path("tunnel.crt"), w.path("tunnel.key")))
	mustT(t, w.tunnelCA.WriteFiles(w.path("tunnel-ca.crt"), ""))
	mustT(t, w.agentCA.WriteFiles(w.path("agent-ca.crt"), ""))
	// The agent-terminated endpoint's key exists only in the agent's checkout.
	site, _ := w.sitesCA.Issue(testpki.Options{CommonName: "ag.test", DNSNames: []string{"ag.test"}})
	mustT(t, site.WriteFiles(filepath.Join(w.agentDir, "ag.crt"), filepath.Join(w.agentDir, "ag.key")))
	zkLeaf, _ := w.sitesCA.Issue(testpki.Options{CommonName: "zk.test", DNSNames: []string{"zk.test"}})
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	plain, zk := echo(t, nil), echo(t, &tls.Config{Certificates: []tls.Certificate{zkPair}})
	cfg := fmt.Sprintf(`apiVersion: tlsd/v1
kind: Endpoint
name: zk
domain: zk.test
upstream: %s
agent: api-agent
---
apiVersion: tlsd/v1
kind: Endpoint
name: ag
domain: ag.test
upstream: %s
terminate_at: agent
agent: api-agent
tls:
  certificate: {crt: ag.crt, key: ag.key}
---
apiVersion: tlsd/v1
kind: Endpoint
name: ed
domain: ed.test
upstream: %s
terminate_at: edge
agent: api-agent
tls: {issuer: internal}
`, zk, plain, plain)
	for _, d := range []string{w.edgeDir, w.agentDir} {
		mustT(t, os.WriteFile(filepath.Join(d, "endpoints.yaml"), []byte(cfg), 0o644))
	}
	return w
}

func (w *splitWorld) path(name string) string { return filepath.Join(w.dir, name) }

func (w *splitWorld) startEdge() {
	w.edge, w.edgeOut = tlsdProcess(w.t, "edge", "--listen", w.listen, "--admin", w.edgeAdmin,
		"--state-dir", w.path("edge-state"), "--tunnel-listen", w.tunnel, "--tunnel-cert", w.path("tunnel.crt"),
		"--tunnel-key", w.path("tunnel.key"), "--agent-ca", w.path("agent-ca.crt"), w.edgeDir)
	w.waitFor(w.edgeOut, "tunnel listener")
}

// agentCert writes a client certificate for name signed by ca.
func (w *splitWorld) agentCert(ca *testpki.Pair, name, file string) {
	c, err := ca.Issue(testpki.Options{CommonName: name, DNSNames: []string{name}, Client: true})
	mustT(w.t, err)
	mustT(w.t, c.WriteFiles(w.path(file+".crt"), w.path(file+".key")))
}

func (w *splitWorld) startAgent(file string) (*exec.Cmd, *lockedBuffer) {
	return tlsdProcess(w.t, "agent", "--edge", w.tunnel, "--cert", w.path(file+".crt"), "--key", w.path(file+".key"),
		"--ca", w.path("tunnel-ca.crt"), "--admin", "off", "--state-dir", w.path(file+"-state"), w.agentDir)
}

func (w *splitWorld) waitFor(out *lockedBuffer, text string) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a process of the race-built test binary starts slowly on a loaded machine
	for !strings.Contains(out.String(), text) {
		if time.Now().After(deadline) {
			w.t.Fatalf("no %q in:\n%s", text, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type edgeStatus struct {
	Agents    []struct{ Name string }
	Endpoints []struct {
		Name      string
		AgentLive *bool `json:"agent_live"`
	}
}

func (w *splitWorld) status() edgeStatus {
	var st edgeStatus
	resp, err := http.Get("http://" + w.edgeAdmin + "/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

func (w *splitWorld) agentsLive(n int) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.status().Agents) != n {
		if time.Now().After(deadline) {
			w.t.Fatalf("%d agent sessions, want %d:\n%s", len(w.status().Agents), n, w.edgeOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *splitWorld) roots(sni string) *x509.CertPool {
	pool := x509.NewCertPool()
	if sni == "ed.test" {
		data, err := os.ReadFile(filepath.Join(w.path("edge-state"), "ca", "root.crt"))
		mustT(w.t, err)
		pool.AppendCertsFromPEM(data)
	} else {
		pool.AddCert(w.sitesCA.Cert)
	}
	return pool
}

// dial connects a client to the edge's public listener.
func (w *splitWorld) dial(sni string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", w.listen, &tls.Config{ServerName: sni, RootCAs: w.roots(sni)})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

func (w *splitWorld) echoes(sni string) error {
	c, err := w.dial(sni)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTripOnce(c, "hello "+sni)
}

// TestSplitDeployment runs tlsd edge and tlsd agent as separate processes and puts them
// through the faults operators meet.
func TestSplitDeployment(t *testing.T) {
	w := newSplitWorld(t)
	// The edge's checkout lacks the agent's key: only --role edge validates it.
	if code, _, _ := tlsd(t, "validate", w.edgeDir); code != 1 {
		t.Errorf("validate of the edge checkout without --role: exit %d, want 1 (key files absent)", code)
	}
	if code, out, _ := tlsd(t, "validate", "--role", "edge", w.edgeDir); code != 0 {
		t.Errorf("validate --role edge: exit %d\n%s", code, out)
	}
	w.startEdge()
	w.agentCert(w.agentCA, "api-agent", "api")
	agent, agentOut := w.startAgent("api")
	w.agentsLive(1)

	t.Run("all three modes through the tunnel", func(t *testing.T) {
		for _, sni := range []string{"zk.test", "ag.test", "ed.test"} {
			if err := w.echoes(sni); err != nil {
				t.Errorf("%s: %v\nedge:\n%s\nagent:\n%s", sni, err, w.edgeOut, agentOut)
			}
		}
	})

	t.Run("agent killed: fail fast and say so", func(t *testing.T) {
		agent.Process.Signal(syscall.SIGKILL)
		agent.Wait()
		w.agentsLive(0)
		start := time.Now()
		if err := w.echoes("zk.test"); err == nil {
			t.Fatal("served without an agent")
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the client waited %s to learn there is no agent", d)
		}
		w.waitFor(w.edgeOut, `no live agent \"api-agent\" serves endpoint zk`)
		for _, e := range w.status().Endpoints {
			if e.AgentLive == nil || *e.AgentLive {
				t.Errorf("status of %s: agent_live = %v, want false", e.Name, e.AgentLive)
			}
		}
	})

	t.Run("agent restarted: serving within 2 s", func(t *testing.T) {
		start := time.Now()
		agent, agentOut = w.startAgent("api")
		for w.echoes("ag.test") != nil {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("not serving 2 s after the agent restarted:\n%s", agentOut)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("edge restarted: the agent reconnects by itself", func(t *testing.T) {
		w.edge.Process.Signal(syscall.SIGTERM)
		w.edge.Wait()
		w.startEdge()
		w.agentsLive(1)
		if err := w.echoes("zk.test"); err != nil {
			t.Errorf("after the edge restarted: %v", err)
		}
		w.waitFor(agentOut, "tunnel to the edge down; reconnecting")
	})

	t.Run("agents that may not serve", func(t *testing.T) {
		w.agentCert(w.tunnelCA, "api-agent", "rogue")  // right name, wrong CA
		w.agentCert(w.agentCA, "other-agent", "other") // right CA, other name
		rogue, _ := w.startAgent("rogue")
		other, _ := w.startAgent("other")
		defer func() { rogue.Process.Kill(); other.Process.Kill(); rogue.Wait(); other.Wait() }()
		w.waitFor(w.edgeOut, "agent rejected")
		w.waitFor(w.edgeOut, "agent=other-agent")
		agent.Process.Signal(syscall.SIGKILL) // only other-agent is left
		agent.Wait()
		w.agentsLive(1)
		if err := w.echoes("zk.test"); err == nil {
			t.Error("an agent with another name served api-agent's endpoint")
		}
		if st := w.status(); len(st.Agents) != 1 || st.Agents[0].Name != "other-agent" {
			t.Errorf("status agents = %+v", st.Agents)
		}
	})

	t.Run("a pool of two survives one being killed mid-traffic", func(t *testing.T) {
		a1, _ := w.startAgent("api")
		a2, _ := w.startAgent("api")
		defer func() { a2.Process.Kill(); a2.Wait() }()
		w.agentsLive(2) // the two api-agent sessions; other-agent ended with its test
		// Round-robin puts one long-lived connection on each session.
		var conns []*tls.Conn
		for range 2 {
			c, err := w.dial("zk.test")
			mustT(t, err)
			defer c.Close()
			mustT(t, roundTripOnce(c, "warm"))
			conns = append(conns, c)
		}
		a1.Process.Signal(syscall.SIGKILL)
		a1.Wait()
		w.agentsLive(1)
		broken := 0
		for _, c := range conns {
			if roundTripOnce(c, "after the kill") != nil {
				broken++
			}
		}
		if broken != 1 {
			t.Errorf("%d of the 2 open connections broke; want exactly the one on the killed agent", broken)
		}
		for i := range 5 {
			if err := w.echoes("zk.test"); err != nil {
				t.Errorf("new connection %d after the kill: %v", i, err)
			}
		}
	})
}

func roundTripOnce(c *tls.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}
