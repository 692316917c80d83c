package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpebble"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/internal/testredis"
)

// fleet is two tlsd edge processes sharing one Redis, one Pebble and one agent.
type fleet struct {
	t                    *testing.T
	dir                  string
	redis                *testredis.Server
	pebble               *testpebble.Pebble
	listen, admin, tun   [2]string // per edge
	edges                [2]*exec.Cmd
	out                  [2]*lockedBuffer
	agentAdmin           string
	agentOut             *lockedBuffer
	tunnelCA, agentCA    *testpki.Pair
	storeKey, acmeDomain string
}

func newFleet(t *testing.T) *fleet {
	f := &fleet{t: t, dir: t.TempDir(), redis: testredis.Start(t), agentAdmin: freeAddr(t), acmeDomain: "acme.fleet.test"}
	for i := range 2 {
		f.listen[i], f.admin[i], f.tun[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	// Pebble validates TLS-ALPN-01 on edge 1's port only: when edge 0 orders, edge 1
	// answers the challenge from what edge 0 put in the store.
	_, port, _ := net.SplitHostPort(f.listen[1])
	p, _ := strconv.Atoi(port)
	f.pebble = testpebble.Start(t, p, 75*time.Second)
	var err error
	f.tunnelCA, err = testpki.NewCA("fleet tunnel CA", time.Time{}, time.Time{})
	mustT(t, err)
	f.agentCA, err = testpki.NewCA("fleet agent CA", time.Time{}, time.Time{})
	mustT(t, err)
	edgeCert, _ := f.tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	mustT(t, edgeCert.WriteFiles(f.path("tunnel.crt"), f.path("tunnel.key")))
	mustT(t, f.tunnelCA.WriteFiles(f.path("tunnel-ca.crt"), ""))
	mustT(t, f.agentCA.WriteFiles(f.path("agent-ca.crt"), ""))
	agentCert, _ := f.agentCA.Issue(testpki.Options{CommonName: "fleet-agent", DNSNames: []string{"fleet-agent"}, Client: true})
	mustT(t, agentCert.WriteFiles(f.path("agent.crt"), f.path("agent.key")))
	f.storeKey = f.path("store.key")
	mustT(t, os.WriteFile(f.storeKey, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	cfg := fmt.Sprintf(`apiVersion: tlsd/v1
kind: Issuer
name: pebble
acme: {directory: %q, email: ops@fleet.test, ca_roots: [%q]}
---
apiVersion: tlsd/v1
kind: Endpoint
name: web
domain: %s
upstream: %s
terminate_at: edge
tls: {issuer: pebble}
---
apiVersion: tlsd/v1
kind: Endpoint
name: svc
domain: svc.fleet.test
upstream: %s
terminate_at: edge
agent: fleet-agent
tls: {issuer: internal}
`, f.pebble.Directory, f.pebble.Minica, f.acmeDomain, echo(t, nil), echo(t, nil))
	mustT(t, os.WriteFile(f.path("endpoints.yaml"), []byte(cfg), 0o644))
	return f
}

func (f *fleet) path(name string) string { return filepath.Join(f.dir, name) }

func (f *fleet) storeArgs() []string {
	return []string{"--state-store", f.redis.URL(), "--state-store-prefix", "fleet1", "--state-store-key", f.storeKey}
}

func (f *fleet) startEdge(i int) {
	args := append([]string{"edge", "--listen", f.listen[i], "--admin", f.admin[i], "--state-dir", f.path(fmt.Sprintf("edge%d-state", i)),
		"--tunnel-listen", f.tun[i], "--tunnel-cert", f.path("tunnel.crt"), "--tunnel-key", f.path("tunnel.key"),
		"--agent-ca", f.path("agent-ca.crt")}, f.storeArgs()...)
	f.edges[i], f.out[i] = tlsdProcess(f.t, append(args, f.path("endpoints.yaml"))...)
	waitText(f.t, f.out[i], "tunnel listener")
}

// adminJSON decodes an admin API answer; false when the request failed.
func adminJSON(addr, path string, v any) bool {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v) == nil
}

// metric sums the samples of a metric (with the given label text, if any) on an admin API.
func metric(t *testing.T, addr, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	mustT(t, err)
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) && strings.Contains(line, label) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

type fleetStatus struct {
	Endpoints []struct {
		Name        string
		Certificate *struct{ State, Serial string }
	}
	StateStore *struct {
		Up    bool
		Error string
	} `json:"state_store"`
}

func (f *fleet) serial(i int) string {
	var st fleetStatus
	adminJSON(f.admin[i], "/status", &st)
	for _, e := range st.Endpoints {
		if e.Name == "web" && e.Certificate != nil && e.Certificate.State == "valid" {
			return e.Certificate.Serial
		}
	}
	return ""
}

func (f *fleet) storeUp(i int) (bool, bool) {
	var st fleetStatus
	if !adminJSON(f.admin[i], "/status", &st) || st.StateStore == nil {
		return false, false
	}
	return st.StateStore.Up, true
}

func eventuallyT(t *testing.T, what string, within time.Duration, ok func() bool, logs ...*lockedBuffer) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, l := range logs {
				b.WriteString(l.String() + "\n---\n")
			}
			t.Fatalf("%s: not within %s\n%s", what, within, b.String())
		}
	}
}

func waitText(t *testing.T, out *lockedBuffer, text string) {
	t.Helper()
	eventuallyT(t, "log line "+text, 30*time.Second, func() bool { return strings.Contains(out.String(), text) }, out)
}

// dial connects to edge i for sni, trusting roots, with the session cache given.
func (f *fleet) dial(i int, sni string, roots *x509.CertPool, cache tls.ClientSessionCache) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", f.listen[i], &tls.Config{ServerName: sni, RootCAs: roots, ClientSessionCache: cache})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

func (f *fleet) echoes(i int, sni string, roots *x509.CertPool) error {
	c, err := f.dial(i, sni, roots, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTripOnce(c, "hello "+sni)
}

// TestFleetOfEdges: two edges share Redis and Pebble. One order reaches the CA and both
// serve its certificate (the other edge answering the challenge); a ticket from edge 0
// resumes on edge 1; both issue from one internal root; an agent serves through both;
// Redis stopped for 30 s: both keep serving and say the store is down, then recover; a
// renewal is served by both, again from one order; edge 0 killed: new connections
// through edge 1 work and the agent's session to it never blinked.
func TestFleetOfEdges(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.startEdge(1) // the one the CA validates on: up before either orders
	f.startEdge(0)
	logs := []*lockedBuffer{f.out[0], f.out[1]}
	started := time.Now()
	orders := func() string {
		return fmt.Sprintf("edge 0 ordered %v, edge 1 %v", metric(t, f.admin[0], "tlsd_acme_orders_total", `result="ok"`),
			metric(t, f.admin[1], "tlsd_acme_orders_total", `result="ok"`))
	}

	// One order, one certificate on both edges.
	eventuallyT(t, "both edges serve a certificate", 30*time.Second, func() bool { return f.serial(0) != "" && f.serial(1) != "" }, logs...)
	t.Logf("both edges serve the certificate %s after their start; %s", time.Since(started).Round(time.Millisecond), orders())
	if f.serial(0) != f.serial(1) {
		t.Errorf("the edges serve different certificates: %s, %s", f.serial(0), f.serial(1))
	}
	if n := metric(t, f.admin[0], "tlsd_acme_orders_total", `result="ok"`) + metric(t, f.admin[1], "tlsd_acme_orders_total", `result="ok"`); n != 1 {
		t.Errorf("%v orders reached the CA, want 1", n)
	}
	roots := f.pebble.Roots()
	for i := range 2 {
		if err := f.echoes(i, f.acmeDomain, roots); err != nil {
			t.Errorf("edge %d: %v", i, err)
		}
	}

	t.Run("a ticket from edge 0 resumes on edge 1", func(t *testing.T) {
		cache := tls.NewLRUClientSessionCache(4)
		c, err := f.dial(0, f.acmeDomain, roots, cache)
		mustT(t, err)
		mustT(t, roundTripOnce(c, "get a ticket")) // a TLS 1.3 ticket arrives after the handshake
		c.Close()
		c, err = f.dial(1, f.acmeDomain, roots, cache)
		mustT(t, err)
		defer c.Close()
		if !c.ConnectionState().DidResume {
			t.Error("edge 1 did not resume edge 0's ticket")
		}
	})

	// One internal root, printed by tlsd ca from the store.
	code, rootPEM, stderr := tlsd(t, append([]string{"ca"}, f.storeArgs()...)...)
	if code != 0 {
		t.Fatalf("tlsd ca --state-store: exit %d: %s", code, stderr)
	}
	internal := x509.NewCertPool()
	internal.AppendCertsFromPEM([]byte(rootPEM))

	agent, agentOut := tlsdProcess(t, "agent", "--edge", f.tun[0], "--edge", f.tun[1], "--cert", f.path("agent.crt"), "--key", f.path("agent.key"),
		"--ca", f.path("tunnel-ca.crt"), "--admin", f.agentAdmin, "--state-dir", f.path("agent-state"), f.path("endpoints.yaml"))
	defer agent.Process.Kill()
	f.agentOut = agentOut
	logs = append(logs, agentOut)
	sessions := func() map[string]agentSession {
		var st struct{ Edges []agentSession }
		adminJSON(f.agentAdmin, "/status", &st)
		out := map[string]agentSession{}
		for _, s := range st.Edges {
			out[s.Edge] = s
		}
		return out
	}
	eventuallyT(t, "the agent connected to both edges", 20*time.Second, func() bool {
		s := sessions()
		return s[f.tun[0]].Connected && s[f.tun[1]].Connected
	}, logs...)
	waitText(t, f.out[1], "endpoints=svc")
	for i := range 2 {
		if err := f.echoes(i, "svc.fleet.test", internal); err != nil {
			t.Errorf("through edge %d and the agent: %v", i, err)
		}
	}
	sessionToEdge1 := sessions()[f.tun[1]]

	t.Run("Redis stopped for 30 s: both edges keep serving", func(t *testing.T) {
		for i := range 2 {
			if v := metric(t, f.admin[i], "tlsd_state_store_up", ""); v != 1 {
				t.Errorf("edge %d: tlsd_state_store_up = %v before the outage", i, v)
			}
		}
		f.redis.Stop()
		outage := time.Now()
		for i := range 2 {
			eventuallyT(t, fmt.Sprintf("edge %d says the store is down", i), 15*time.Second, func() bool {
				up, ok := f.storeUp(i)
				return ok && !up
			}, logs...)
			if v := metric(t, f.admin[i], "tlsd_state_store_up", ""); v != 0 {
				t.Errorf("edge %d: tlsd_state_store_up = %v during the outage", i, v)
			}
			t.Logf("edge %d says the store is down %s after it stopped", i, time.Since(outage).Round(time.Millisecond))
		}
		for time.Since(outage) < 30*time.Second {
			for i := range 2 {
				for _, c := range []struct {
					sni   string
					roots *x509.CertPool
				}{{f.acmeDomain, roots}, {"svc.fleet.test", internal}} {
					if err := f.echoes(i, c.sni, c.roots); err != nil {
						t.Fatalf("edge %d, %s, %s into the outage: %v", i, c.sni, time.Since(outage).Round(time.Second), err)
					}
				}
				resp, err := http.Get("http://" + f.admin[i] + "/readyz")
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("edge %d not ready during the outage: %v %v", i, err, resp)
				}
				resp.Body.Close()
			}
			time.Sleep(time.Second)
		}
		f.redis.Restart()
		back := time.Now()
		for i := range 2 {
			eventuallyT(t, fmt.Sprintf("edge %d says the store is back", i), 30*time.Second, func() bool {
				up, ok := f.storeUp(i)
				return ok && up
			}, logs...)
			t.Logf("edge %d says the store is up %s after it came back", i, time.Since(back).Round(time.Millisecond))
		}
	})

	t.Run("a renewal by the edge the CA cannot reach, answered by the other", func(t *testing.T) {
		c, err := f.dial(1, f.acmeDomain, roots, nil)
		mustT(t, err)
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		first := leaf.SerialNumber.Text(16)
		// Both edges renew at two thirds of the life. Edge 1 is stopped over that moment,
		// so edge 0 takes the order's lock; edge 1 continues at once and answers the
		// validation, which Pebble sends only to its port, from what edge 0 stored.
		renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
		time.Sleep(time.Until(renewAt.Add(-time.Second)))
		syscall.Kill(f.edges[1].Process.Pid, syscall.SIGSTOP)
		eventuallyT(t, "edge 0 holds the order's lock", 15*time.Second, func() bool {
			keys, _ := f.redis.Command("KEYS", "fleet1:lock:tlsd_issue_*")
			return strings.Contains(keys, "tlsd_issue_")
		}, logs...)
		syscall.Kill(f.edges[1].Process.Pid, syscall.SIGCONT)
		eventuallyT(t, "both edges serve the renewed certificate", 30*time.Second, func() bool {
			a, b := f.serial(0), f.serial(1)
			return a != "" && a != first && a == b
		}, logs...)
		if n := metric(t, f.admin[0], "tlsd_acme_orders_total", `result="ok"`); n != 1 {
			t.Errorf("edge 0 ordered %v certificates, want 1 (the renewal, validated through edge 1)", n)
		}
		if n := metric(t, f.admin[0], "tlsd_acme_orders_total", `result="ok"`) + metric(t, f.admin[1], "tlsd_acme_orders_total", `result="ok"`); n != 2 {
			t.Errorf("%v orders in all, want 2 (one issuance, one renewal)", n)
		}
		t.Logf("renewed certificate on both edges; %s", orders())
	})

	t.Run("edge 0 killed: edge 1 serves, its agent session never blinked", func(t *testing.T) {
		syscall.Kill(-f.edges[0].Process.Pid, syscall.SIGKILL)
		f.edges[0].Wait()
		for range 5 {
			for _, c := range []struct {
				sni   string
				roots *x509.CertPool
			}{{f.acmeDomain, roots}, {"svc.fleet.test", internal}} {
				if err := f.echoes(1, c.sni, c.roots); err != nil {
					t.Errorf("edge 1, %s: %v", c.sni, err)
				}
			}
		}
		eventuallyT(t, "the agent sees edge 0 down", 10*time.Second, func() bool { return !sessions()[f.tun[0]].Connected }, logs...)
		now := sessions()[f.tun[1]]
		if !now.Connected || !now.Since.Equal(sessionToEdge1.Since) || now.Reconnects != sessionToEdge1.Reconnects {
			t.Errorf("the session to edge 1 changed: before %+v, after %+v", sessionToEdge1, now)
		}
	})
}

type agentSession struct {
	Edge       string
	Connected  bool
	Since      time.Time
	Reconnects int64
}
