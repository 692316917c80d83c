package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// indent puts n spaces before every line of s.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad)
}

// TestImportNgrokRoundTrip converts an ngrok version 3 configuration — agent
// termination with inline PEM, edge termination by a terminate-tls action with a
// restrict-ips rule, and a passthrough endpoint — serves what it wrote with tlsd run,
// and connects to each endpoint with a client that verifies the certificate.
func TestImportNgrokRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA("migration CA", time.Time{}, time.Time{})
	mustT(t, err)
	leaf := func(name string) *testpki.Pair {
		p, err := ca.Issue(testpki.Options{CommonName: name, DNSNames: []string{name}})
		mustT(t, err)
		return p
	}
	agentLeaf, edgeLeaf, zkLeaf := leaf("agent.test"), leaf("edge.test"), leaf("zk.test")
	mustT(t, edgeLeaf.WriteFiles(filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key"), ca))
	zkPair, _ := tls.X509KeyPair(zkLeaf.CertPEM(), zkLeaf.KeyPEM())
	plain, zk := echo(t, nil), echo(t, &tls.Config{Certificates: []tls.Certificate{zkPair}})
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	config := fmt.Sprintf(`version: 3
agent:
  authtoken: not-needed
endpoints:
  - name: agent-side
    url: tls://agent.test
    upstream: {url: %s}
    agent_tls_termination:
      server_certificate: |
%s
      server_private_key: |
%s
  - name: edge-side
    url: tls://edge.test
    upstream: {url: %s}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: restrict-ips
              config: {allow: [127.0.0.0/8]}
            - type: terminate-tls
              config: {server_certificate: edge.crt, server_private_key: edge.key, min_version: "1.3"}
  - name: passthrough
    url: tls://zk.test
    upstream: {url: %s}
`, port(plain), indent(string(agentLeaf.CertPEM()), 8), indent(string(agentLeaf.KeyPEM()), 8), port(plain), port(zk))
	mustT(t, os.WriteFile(filepath.Join(dir, "ngrok.yml"), []byte(config), 0o644))
	out := filepath.Join(dir, "endpoints")
	code, stdout, stderr := tlsd(t, "import", "ngrok", "--out", out, filepath.Join(dir, "ngrok.yml"))
	if code != 0 || !strings.Contains(stdout, "3 files, 3 endpoints: 0 errors") || !strings.Contains(stderr, "authtoken is ngrok's own setting") {
		t.Fatalf("import: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if fi, err := os.Stat(filepath.Join(out, "agent-side.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the inline key was written with mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if code, _, stderr := tlsd(t, "import", "ngrok", "--out", out, filepath.Join(dir, "ngrok.yml")); code != 2 || !strings.Contains(stderr, "--force") {
		t.Errorf("a second import over the files: exit %d, %s; want a refusal naming --force", code, stderr)
	}

	listen := freeAddr(t)
	_, logs := tlsdProcess(t, "run", "--listen", listen, "--admin", "off", "--state-dir", filepath.Join(dir, "state"), out)
	dialUntilServed(t, listen, "agent.test", logs).Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, sni := range []string{"agent.test", "edge.test", "zk.test"} {
		c, err := tls.Dial("tcp", listen, &tls.Config{ServerName: sni, RootCAs: roots})
		if err != nil {
			t.Errorf("%s: %v\n%s", sni, err, logs)
			continue
		}
		if err := roundTripOnce(c, "hello "+sni); err != nil {
			t.Errorf("%s: %v", sni, err)
		}
		c.Close()
	}
}

// TestImportNgrokRefusals: nothing convertible is exit 1 with the reasons; usage errors
// are exit 2.
func TestImportNgrokRefusals(t *testing.T) {
	dir := t.TempDir()
	httpOnly := filepath.Join(dir, "ngrok.yml")
	mustT(t, os.WriteFile(httpOnly, []byte("version: \"2\"\ntunnels:\n  web:\n    proto: http\n    addr: 8080\n"), 0o644))
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"import", "ngrok", "--out", dir, httpOnly}, 1, `ngrok.yml:3:3: warning: http tunnel "web" skipped`},
		{[]string{"import", "ngrok", "--out", dir, "--", "http", "8080"}, 2, "tlsd converts `ngrok tls ADDR [flags]` command lines"},
		{[]string{"import", "ngrok", "--out", dir, "--", "tls", "443"}, 1, "no --domain"},
		{[]string{"import", "ngrok", "--out", dir}, 2, "give one ngrok configuration file"},
		{[]string{"import", "ngrok", filepath.Join(dir, "missing.yml")}, 2, "no such file"},
		{[]string{"import", "ngrok", "--out", filepath.Join(dir, "bad-agent"), "--agent", "Bad_Agent", "--", "tls", "443", "--domain", "a.example.com"}, 1, ""},
	} {
		if code, _, stderr := tlsd(t, c.args...); code != c.code || !strings.Contains(stderr, c.err) {
			t.Errorf("tlsd %v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.err)
		}
	}
	// A bad --agent is what validating the written files finds, at its position.
	_, out, _ := tlsd(t, "import", "ngrok", "--out", filepath.Join(dir, "bad-agent2"), "--agent", "Bad_Agent", "--", "tls", "443", "--domain", "a.example.com")
	if !regexp.MustCompile(`a-example-com\.yaml:\d+:8: error: agent "Bad_Agent" is not valid`).MatchString(out) {
		t.Errorf("an invalid --agent: the validation report does not point at it:\n%s", out)
	}
}
