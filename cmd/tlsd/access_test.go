package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// accessCase is one endpoint's address rules and the clients it must serve and refuse.
type accessCase struct {
	name, rules   string // the endpoint's ip_restriction block
	serve, refuse []string
}

// accessCases are the rules written in IPv4-mapped form, the form that once failed open,
// beside plain ones: in the endpoint's own lists and in IPPolicy documents, allow and
// deny. The listener is dual-stack, so IPv4 clients arrive as mapped addresses too.
var accessCases = []accessCase{
	{"mapped-allow-one", "  allow_cidrs: [\"::ffff:127.0.0.1/128\"]\n", []string{"127.0.0.1"}, []string{"127.0.0.2", "::1"}},
	{"mapped-allow-net", "  allow_cidrs: [\"::ffff:127.0.0.0/104\"]\n", []string{"127.0.0.1", "127.0.0.2"}, []string{"::1"}},
	{"mapped-allow-bare", "  allow_cidrs: [\"::ffff:127.0.0.2\"]\n", []string{"127.0.0.2"}, []string{"127.0.0.1", "::1"}},
	{"mapped-deny-one", "  deny_cidrs: [\"::ffff:127.0.0.1\"]\n", []string{"127.0.0.2", "::1"}, []string{"127.0.0.1"}},
	{"policy-mapped-allow", "  policies: [mapped-allow]\n", []string{"127.0.0.2"}, []string{"127.0.0.1", "::1"}},
	{"policy-mapped-deny", "  policies: [mapped-deny]\n", []string{"::1"}, []string{"127.0.0.1", "127.0.0.2"}},
	{"v6-allow", "  allow_cidrs: [\"::1\"]\n", []string{"::1"}, []string{"127.0.0.1", "127.0.0.2"}},
	{"mixed", "  allow_cidrs: [127.0.0.0/8]\n  deny_cidrs: [\"::ffff:127.0.0.2/128\"]\n", []string{"127.0.0.1"}, []string{"127.0.0.2", "::1"}},
}

const accessPolicies = `---
apiVersion: tlsd/v1
kind: IPPolicy
name: mapped-allow
allow_cidrs: ["::ffff:127.0.0.2/128"]
---
apiVersion: tlsd/v1
kind: IPPolicy
name: mapped-deny
deny_cidrs: ["::ffff:127.0.0.0/104"]
`

// accessConfig is every case as a passthrough endpoint NAME.test to upstream.
func accessConfig(upstream string) string {
	var b strings.Builder
	for _, c := range accessCases {
		fmt.Fprintf(&b, "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s.test\nupstream: %s\nip_restriction:\n%s", c.name, c.name, upstream, c.rules)
	}
	return b.String() + accessPolicies
}

// TestAddressRulesServeAndRefuse runs tlsd run and tlsd edge on a dual-stack listener and
// asserts, for each case, who is served and who gets access_denied. Then a rule that
// cannot be used (a mapped prefix shorter than /96) is written: the reload is refused
// and the running rules stay.
func TestAddressRulesServeAndRefuse(t *testing.T) {
	ca, err := testpki.NewCA("access CA", time.Time{}, time.Time{})
	mustT(t, err)
	leaf, err := ca.Issue(testpki.Options{CommonName: "access", DNSNames: []string{"*.test"}})
	mustT(t, err)
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	mustT(t, err)
	upstream := echo(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, role := range []string{"run", "edge"} {
		t.Run(role, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config")
			mustT(t, os.MkdirAll(cfg, 0o755))
			mustT(t, os.WriteFile(filepath.Join(cfg, "endpoints.yaml"), []byte(accessConfig(upstream)), 0o644))
			_, port, _ := net.SplitHostPort(freeAddr(t))
			out := startRole(t, role, dir, ":"+port, cfg)
			dialUntilServed(t, "127.0.0.1:"+port, "mapped-allow-one.test", out).Close()
			checkAccessCases(t, port, roots)
			bad := "---\napiVersion: tlsd/v1\nkind: IPPolicy\nname: too-wide\nallow_cidrs: [\"::ffff:0:0/80\"]\n"
			mustT(t, os.WriteFile(filepath.Join(cfg, "bad.yaml"), []byte(bad), 0o644))
			waitOutput(t, out, "bad.yaml:5:15", "invalid-cidr")
			checkAccessCases(t, port, roots)
		})
	}
}

// checkAccessCases dials every case from every client address.
func checkAccessCases(t *testing.T, port string, roots *x509.CertPool) {
	t.Helper()
	for _, c := range accessCases {
		for _, src := range c.serve {
			if err := dialAccess(src, port, c.name+".test", roots); err != nil {
				t.Errorf("%s from %s: %v, want served", c.name, src, err)
			}
		}
		for _, src := range c.refuse {
			if err := dialAccess(src, port, c.name+".test", roots); err == nil || !strings.Contains(err.Error(), "access denied") {
				t.Errorf("%s from %s: %v, want the access_denied alert", c.name, src, err)
			}
		}
	}
}

// dialAccess connects from src to the listener's address of src's family and echoes.
func dialAccess(src, port, sni string, roots *x509.CertPool) error {
	dst := net.JoinHostPort("127.0.0.1", port)
	if strings.Contains(src, ":") {
		dst = net.JoinHostPort("::1", port)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := tls.DialWithDialer(d, "tcp", dst, &tls.Config{ServerName: sni, RootCAs: roots})
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTripOnce(c, "hello "+sni)
}

// startRole starts tlsd run, or tlsd edge with a tunnel listener and its PKI, serving
// the configuration in cfg on listen.
func startRole(t *testing.T, role, dir, listen, cfg string) *lockedBuffer {
	t.Helper()
	args := []string{role, "--listen", listen, "--admin", "off", "--state-dir", filepath.Join(dir, "state")}
	if role == "edge" {
		tunnelCA, err := testpki.NewCA("tunnel CA", time.Time{}, time.Time{})
		mustT(t, err)
		edgeCert, err := tunnelCA.Issue(testpki.Options{CommonName: "edge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		mustT(t, err)
		p := func(name string) string { return filepath.Join(dir, name) }
		mustT(t, edgeCert.WriteFiles(p("tunnel.crt"), p("tunnel.key")))
		mustT(t, tunnelCA.WriteFiles(p("agent-ca.crt"), ""))
		args = append(args, "--tunnel-listen", freeAddr(t), "--tunnel-cert", p("tunnel.crt"), "--tunnel-key", p("tunnel.key"), "--agent-ca", p("agent-ca.crt"))
	}
	_, out := tlsdProcess(t, append(args, cfg)...)
	return out
}

// waitOutput waits until one line of out holds every part.
func waitOutput(t *testing.T, out *lockedBuffer, parts ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("a line with %q", parts), func() bool {
		return slices.ContainsFunc(strings.Split(out.String(), "\n"), func(line string) bool { return containsEvery(line, parts) })
	}, out)
}

func containsEvery(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
