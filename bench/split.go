package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// SplitTLSD names the split deployment: `tlsd edge` and `tlsd agent`, both on CPU 0,
// every endpoint served through the agent's tunnel session.
const SplitTLSD = "tlsd edge+agent"

// splitCases are the figures the tunnel changes: its throughput, CPU per GB and latency.
var splitCases = regexp.MustCompile(`^(passthrough bulk|terminated bulk, 1 conn$|` + regexp.QuoteMeta(pingCase) + `$)`)

// StartSplitTLSD runs `tlsd edge` and a `tlsd agent` connected to it, and returns once
// the agent's session is up; admin gives the edge an admin API (for its profiles).
func StartSplitTLSD(w *World, bin string, admin bool) (*Server, error) {
	s := newServer(SplitTLSD)
	s.Cases = splitCases
	edgeAdmin := "off"
	if admin {
		s.Admin = freeAddr()
		edgeAdmin = s.Admin
	}
	dir := filepath.Join(w.Dir, "tlsd-split")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := writeTunnelPKI(dir); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "endpoints.yaml"), []byte(splitEndpoints(w, s)), 0o644); err != nil {
		return nil, err
	}
	tunnel, agentAdmin := freeAddr(), freeAddr()
	path := func(name string) string { return filepath.Join(dir, name) }
	if err := s.start(w.Dir, bin, "edge", "--admin", edgeAdmin, "--log-level", "warn", "--state-dir", path("edge-state"),
		"--tunnel-listen", tunnel, "--tunnel-cert", path("tunnel.crt"), "--tunnel-key", path("tunnel.key"),
		"--agent-ca", path("agent-ca.crt"), dir); err != nil {
		return s, err
	}
	agent, err := pinned(filepath.Join(w.Dir, "tlsd-agent.log"), []string{bin, "agent", "--edge", tunnel,
		"--cert", path("agent.crt"), "--key", path("agent.key"), "--ca", path("tunnel-ca.crt"),
		"--admin", agentAdmin, "--log-level", "warn", "--state-dir", path("agent-state"), dir})
	if err != nil {
		return s, fmt.Errorf("start the agent: %w", err)
	}
	s.companions = append(s.companions, agent)
	return s, waitReady(agentAdmin, filepath.Join(w.Dir, "tlsd-agent.log"))
}

// splitEndpoints: passthrough, terminated and terminated-for-bulk, all through the agent.
func splitEndpoints(w *World, s *Server) string {
	var b strings.Builder
	ep := func(name, domain, listen, upstream, extra string) {
		fmt.Fprintf(&b, "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s\nlisten: %q\nupstream: %s\nagent: bench-agent\n%s",
			name, domain, listen, upstream, extra)
	}
	term := fmt.Sprintf("terminate_at: edge\ntls:\n  certificate: {crt: %s, key: %s}\n", w.CertFile, w.KeyFile)
	ep("pt", "pt.test", s.PT, w.Sink, "")
	ep("echo", "echo.test", s.PT, w.EchoPT, "")
	ep("term", "term.test", s.Term, w.Echo, term)
	ep("term-bulk", "term.test", s.TermBulk, w.Discard, term)
	return b.String()
}

// writeTunnelPKI writes the tunnel's CA and the edge's certificate, and the agents' CA
// and the agent's client certificate (bench-agent).
func writeTunnelPKI(dir string) error {
	tunnelCA, err := testpki.NewCA("bench tunnel CA", time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	agentCA, err := testpki.NewCA("bench agent CA", time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	edge, err := tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return err
	}
	agent, err := agentCA.Issue(testpki.Options{CommonName: "bench-agent", DNSNames: []string{"bench-agent"}, Client: true})
	if err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	for _, err := range []error{
		tunnelCA.WriteFiles(path("tunnel-ca.crt"), ""), agentCA.WriteFiles(path("agent-ca.crt"), ""),
		edge.WriteFiles(path("tunnel.crt"), path("tunnel.key")), agent.WriteFiles(path("agent.crt"), path("agent.key")),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits for an agent's /readyz: ready while its tunnel session is up.
func waitReady(admin, logPath string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(logPath)
	return fmt.Errorf("the agent never connected: %s", data)
}
