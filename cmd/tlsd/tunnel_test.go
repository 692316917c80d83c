package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/certs"
)

// tunnelStatus is what these tests read of an edge's or an agent's /status.
type tunnelStatus struct {
	Tunnel *struct{ Serial string } `json:"tunnel_certificate"`
	Agents []struct {
		Name     string
		Since    time.Time
		NotAfter time.Time `json:"certificate_not_after"`
	}
}

func readStatus(t *testing.T, admin string) tunnelStatus {
	var st tunnelStatus
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

func leafOf(t *testing.T, file string) *x509.Certificate {
	data, err := os.ReadFile(file)
	mustT(t, err)
	list, err := certs.ParseCertificates(data)
	mustT(t, err)
	return list[0]
}

func waitUntil(t *testing.T, what string, cond func() bool, outs ...*lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // bounds a hang only: a race-built child loading thousands of endpoints on a loaded machine is slow
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s\n%v", what, outs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTunnelCommandsAndRotation: the split deployment's PKI from `tlsd tunnel` alone
// (three commands), an edge and an agent running on it, then both certificates renewed
// by running the commands again: each process reads its new files without a restart, the
// open session and a connection through it carry on, and the next session the agent
// opens uses its new certificate. Both sides report their certificates in /status and
// /metrics.
func TestTunnelCommandsAndRotation(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "ca-state")
	tunnelCmd := func(args ...string) string {
		t.Helper()
		code, out, stderr := tlsd(t, append([]string{"tunnel", "--state-dir", state, "--out", dir}, args...)...)
		if code != 0 {
			t.Fatalf("tlsd tunnel %v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	mustT(t, os.WriteFile(filepath.Join(dir, "tunnel-ca.pem"), []byte(tunnelCmd("ca")), 0o644))
	tunnelCmd("edge-cert", "127.0.0.1", "localhost")
	if out := tunnelCmd("agent-cert", "api-agent"); !strings.Contains(out, "api-agent.key (mode 0600)") || !strings.Contains(out, "Renew before it expires") {
		t.Errorf("agent-cert says:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "api-agent.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent key mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if leaf := leafOf(t, filepath.Join(dir, "api-agent.crt")); len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "api-agent" ||
		leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || leaf.NotAfter.Sub(leaf.NotBefore) < 364*24*time.Hour {
		t.Errorf("agent certificate: names %v, usage %v, lifetime %s", leaf.DNSNames, leaf.ExtKeyUsage, leaf.NotAfter.Sub(leaf.NotBefore))
	}

	conf := filepath.Join(dir, "conf")
	mustT(t, os.MkdirAll(conf, 0o755))
	mustT(t, os.WriteFile(filepath.Join(conf, "e.yaml"), []byte("apiVersion: tlsd/v1\nkind: Endpoint\nname: ed\ndomain: ed.test\nupstream: "+echo(t, nil)+
		"\nterminate_at: edge\nagent: api-agent\ntls: {issuer: internal}\n"), 0o644))
	listen, tunnelAddr, edgeAdmin, agentAdmin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	edgeArgs := []string{"edge", "--listen", listen, "--admin", edgeAdmin, "--state-dir", filepath.Join(dir, "edge-state"),
		"--tunnel-listen", tunnelAddr, "--tunnel-cert", filepath.Join(dir, "edge.crt"), "--tunnel-key", filepath.Join(dir, "edge.key"),
		"--agent-ca", filepath.Join(dir, "tunnel-ca.pem"), conf}
	edge, edgeOut := tlsdProcess(t, edgeArgs...)
	_, agentOut := tlsdProcess(t, "agent", "--edge", tunnelAddr, "--cert", filepath.Join(dir, "api-agent.crt"), "--key", filepath.Join(dir, "api-agent.key"),
		"--ca", filepath.Join(dir, "tunnel-ca.pem"), "--admin", agentAdmin, "--state-dir", filepath.Join(dir, "agent-state"), conf)
	waitUntil(t, "the agent's session", func() bool { return len(readStatus(t, edgeAdmin).Agents) == 1 }, edgeOut, agentOut)

	roots := x509.NewCertPool()
	roots.AddCert(leafOf(t, filepath.Join(dir, "edge-state", "ca", "root.crt")))
	long, err := tls.Dial("tcp", listen, &tls.Config{ServerName: "ed.test", RootCAs: roots})
	mustT(t, err)
	defer long.Close()
	mustT(t, roundTripOnce(long, "before the rotation"))
	for admin, want := range map[string]string{edgeAdmin: "<td>api-agent</td>", agentAdmin: `<h1 id="title">tlsd agent api-agent</h1>`} {
		if page := pageOf(t, admin); !strings.Contains(page, want) || !strings.Contains(page, `id="tunnel-cert"`) {
			t.Errorf("the status page of %s lacks %s or the tunnel certificate:\n%s", admin, want, page)
		}
	}
	before := readStatus(t, edgeAdmin)
	if before.Tunnel == nil || before.Tunnel.Serial != leafOf(t, filepath.Join(dir, "edge.crt")).SerialNumber.Text(16) ||
		!before.Agents[0].NotAfter.Equal(leafOf(t, filepath.Join(dir, "api-agent.crt")).NotAfter) {
		t.Fatalf("edge status before the rotation: %+v", before)
	}
	if _, out, _ := tlsd(t, "status", "--admin", edgeAdmin); !regexp.MustCompile(`(?m)^api-agent\s+127\.0\.0\.1:\d+\s+\S+\s+\d+\s+true$`).MatchString(out) {
		t.Errorf("tlsd status does not show the agent's session:\n%s", out)
	}
	if _, out, _ := tlsd(t, "status", "--admin", agentAdmin); !strings.HasPrefix(out, "agent api-agent\n") ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(tunnelAddr)+`\s+\S*\s+\d{4}-\S+\s+\d+\s+\d+$`).MatchString(out) {
		t.Errorf("tlsd status of the agent does not show its name and its session to the edge:\n%s", out)
	}
	if _, out, _ := tlsd(t, "status", "--admin", agentAdmin, "--format", "json"); !strings.Contains(out, `"agent": "api-agent"`) ||
		!strings.Contains(out, `"edges": [`) {
		t.Errorf("tlsd status --format json of the agent is not its /status as it is:\n%s", out)
	}
	for _, m := range []string{metricsOf(t, edgeAdmin), metricsOf(t, agentAdmin)} {
		if !strings.Contains(m, "tlsd_tunnel_certificate_expiry_timestamp_seconds ") {
			t.Errorf("metrics lack the tunnel certificate's expiry")
		}
	}
	if !strings.Contains(metricsOf(t, edgeAdmin), `tlsd_tunnel_agent_certificate_expiry_timestamp_seconds{agent="api-agent"}`) {
		t.Errorf("the edge's metrics lack the agent's certificate expiry")
	}

	// Renew both: the commands again, with another lifetime.
	tunnelCmd("--days", "30", "edge-cert", "127.0.0.1", "localhost")
	tunnelCmd("--days", "30", "agent-cert", "api-agent")
	newEdge, newAgent := leafOf(t, filepath.Join(dir, "edge.crt")), leafOf(t, filepath.Join(dir, "api-agent.crt"))
	waitUntil(t, "the edge reads its new certificate", func() bool {
		st := readStatus(t, edgeAdmin)
		return st.Tunnel != nil && st.Tunnel.Serial == newEdge.SerialNumber.Text(16)
	}, edgeOut)
	waitUntil(t, "the agent reads its new certificate", func() bool {
		st := readStatus(t, agentAdmin)
		return st.Tunnel != nil && st.Tunnel.Serial == newAgent.SerialNumber.Text(16)
	}, agentOut)
	if after := readStatus(t, edgeAdmin); len(after.Agents) != 1 || !after.Agents[0].Since.Equal(before.Agents[0].Since) {
		t.Errorf("the rotation changed the agent's session: before %+v, after %+v", before.Agents, after.Agents)
	}
	mustT(t, roundTripOnce(long, "after the rotation"))

	// The next session the agent opens (the edge restarted) is made with the new files.
	mustT(t, syscall.Kill(-edge.Process.Pid, syscall.SIGKILL))
	edge.Wait()
	_, edgeOut = tlsdProcess(t, edgeArgs...)
	waitUntil(t, "a new session with the new agent certificate", func() bool {
		st := readStatus(t, edgeAdmin)
		return len(st.Agents) == 1 && st.Agents[0].NotAfter.Equal(newAgent.NotAfter)
	}, edgeOut, agentOut)
}

func metricsOf(t *testing.T, admin string) string { return adminGet(t, admin, "/metrics") }
func pageOf(t *testing.T, admin string) string    { return adminGet(t, admin, "/") }

func adminGet(t *testing.T, admin, path string) string {
	resp, err := http.Get("http://" + admin + path)
	mustT(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	mustT(t, err)
	return string(data)
}
