package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/internal/testknot"
	"github.com/tlsd/tlsd/internal/testpebble"
	"github.com/tlsd/tlsd/internal/testport"
	"github.com/tlsd/tlsd/tunnel"
)

// issuerYAML is an Issuer document for Pebble with the extra acme lines given.
func issuerYAML(name string, pb *testpebble.Pebble, acme string) string {
	return fmt.Sprintf("---\napiVersion: tlsd/v1\nkind: Issuer\nname: %s\nacme:\n  directory: %s\n  ca_roots: [%s]\n%s",
		name, pb.Directory, pb.Minica, acme)
}

// rfc2136YAML are the acme lines of an issuer validating by DNS-01 through knot.
func rfc2136YAML(knot *testknot.Server, secretFile string) string {
	return fmt.Sprintf("  challenges: [dns-01]\n  dns:\n    rfc2136:\n      server: %s\n      tsig_key_name: %s\n      tsig_secret_file: %s\n  propagation_timeout: 30s\n",
		knot.Addr, testknot.KeyName, secretFile)
}

// waitCertificate waits until the certificate of endpoint, as status reports it, is ok.
func waitCertificate(t *testing.T, status func() []admin.EndpointStatus, endpoint, what string, ok func(*admin.CertificateStatus) bool, log fmt.Stringer) *admin.CertificateStatus {
	t.Helper()
	var last *admin.CertificateStatus
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		for _, ep := range status() {
			if ep.Name == endpoint && ep.Certificate != nil {
				if last = ep.Certificate; ok(last) {
					return last
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("certificate of %s never %s: %+v\n%s", endpoint, what, last, log)
	return nil
}

// issuedBy waits until endpoint's certificate is valid and validated by challenge, then
// checks that a client trusting roots gets it for sni and is served.
func issuedBy(t *testing.T, e *env, status func() []admin.EndpointStatus, endpoint, challenge, sni string, roots *x509.CertPool) *admin.CertificateStatus {
	t.Helper()
	st := waitCertificate(t, status, endpoint, "valid", isValid, e.log)
	if st.Challenge != challenge || st.RenewAt.IsZero() {
		t.Errorf("certificate of %s: %+v, want it validated by %s and a renewal time", endpoint, st, challenge)
	}
	conn, err := e.dialTLS(&tls.Config{ServerName: sni, RootCAs: roots})
	must(t, err)
	defer conn.Close()
	if sn := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); sn != st.Serial {
		t.Errorf("%s served serial %s, status says %s", sni, sn, st.Serial)
	}
	echoOnce(t, conn, "served by "+challenge)
	return st
}

func isValid(s *admin.CertificateStatus) bool  { return s.State == "valid" }
func isFailed(s *admin.CertificateStatus) bool { return s.State == "failed" }

func writeSecret(t *testing.T, path string) {
	key := make([]byte, 32)
	rand.Read(key)
	must(t, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
}

// TestACMEDNS01OverRFC2136: a wildcard endpoint gets its certificate by DNS-01, the TXT
// record published on a real authoritative server (Knot) by a TSIG-signed dynamic update,
// the one Pebble resolves with; the record is gone afterwards. An issuer with a wrong
// TSIG secret fails with the reason and a retry time in /status, harming no one else.
func TestACMEDNS01OverRFC2136(t *testing.T) {
	t.Parallel()
	knot := testknot.Start(t, "dns.test")
	pb := testpebble.StartWith(t, testpebble.Options{Validity: time.Hour, DNSServer: knot.Addr})
	e := newEnv(t)
	up := newEchoServer(t, nil)
	wrong := e.path("wrong-tsig.key")
	writeSecret(t, wrong)
	e.start(issuerYAML("knot", pb, rfc2136YAML(knot, knot.SecretFile))+issuerYAML("wrongkey", pb, rfc2136YAML(knot, wrong))+
		yamlEndpoint("wild", "*.dns.test", up.addr(), "edge", "  issuer: knot\n")+
		yamlEndpoint("refused", "refused.dns.test", up.addr(), "edge", "  issuer: wrongkey\n"),
		func(o *Options) { o.ACMERetryBase = time.Minute })
	status := func() []admin.EndpointStatus { return e.d.Status().Endpoints }

	issuedBy(t, e, status, "wild", "dns-01", "anything.dns.test", pb.Roots())
	conn, err := e.dialTLS(&tls.Config{ServerName: "other.dns.test", RootCAs: pb.Roots()})
	must(t, err)
	if names := conn.ConnectionState().PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != "*.dns.test" {
		t.Errorf("served certificate names %v, want [*.dns.test]", names)
	}
	conn.Close()
	if !eventually(10*time.Second, func() bool { return len(knot.TXT(t, "_acme-challenge.dns.test")) == 0 }) {
		t.Errorf("the challenge's TXT record is still published: %v", knot.TXT(t, "_acme-challenge.dns.test"))
	}

	failed := waitCertificate(t, status, "refused", "failed", isFailed, e.log)
	if !strings.Contains(failed.Error, "TSIG") || failed.NextRetry.IsZero() {
		t.Errorf("wrong TSIG secret: status %+v, want a TSIG reason and a retry time", failed)
	}
	t.Logf("wrong TSIG secret reported as: %s", failed.Error)
}

// TestACMEDNS01ExecHook: with an exec hook tlsd looks nothing up itself; it calls the
// hook to present and to clean up the record (here in pebble-challtestsrv's DNS), and a
// hook that fails is the order's reason, with its stderr.
func TestACMEDNS01ExecHook(t *testing.T) {
	t.Parallel()
	pb := testpebble.StartWith(t, testpebble.Options{Validity: time.Hour})
	e := newEnv(t)
	up := newEchoServer(t, nil)
	hook, err := filepath.Abs("testdata/dns-hook.sh")
	must(t, err)
	notes := e.path("hook-notes")
	hookYAML := func(api string) string {
		return fmt.Sprintf("  challenges: [dns-01]\n  dns:\n    exec: [%s, %q, %s]\n  propagation_timeout: 20s\n", hook, api, notes)
	}
	e.start(issuerYAML("hook", pb, hookYAML(pb.ChallTestSrv))+issuerYAML("broken", pb, hookYAML(testport.Unused(t)))+
		yamlEndpoint("wild", "*.hook.test", up.addr(), "edge", "  issuer: hook\n")+
		yamlEndpoint("broken", "*.broken.test", up.addr(), "edge", "  issuer: broken\n"),
		func(o *Options) { o.ACMERetryBase = time.Minute })
	status := func() []admin.EndpointStatus { return e.d.Status().Endpoints }

	issuedBy(t, e, status, "wild", "dns-01", "www.hook.test", pb.Roots())
	e.log.waitFor(t, "dns hook ran", "action=cleanup", "fqdn=_acme-challenge.hook.test.")
	got, _ := os.ReadFile(notes)
	for _, want := range []string{"present _acme-challenge.hook.test.", "cleanup _acme-challenge.hook.test."} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the hook was not called as %q; its notes:\n%s", want, got)
		}
	}
	if txt := testknot.LookupTXT(t, pb.DNSServer(), "_acme-challenge.hook.test."); len(txt) != 0 {
		t.Errorf("the record is still published after cleanup: %v", txt)
	}

	failed := waitCertificate(t, status, "broken", "failed", isFailed, e.log)
	if !strings.Contains(failed.Error, "dns hook") || !strings.Contains(failed.Error, "curl") {
		t.Errorf("failing hook: status error %q, want the hook and its stderr", failed.Error)
	}
}

// TestACMEHTTP01: HTTP-01 is answered on the generation's HTTP listener (--http-listen),
// which redirects every other request for a served domain to https://; without the
// listener an issuer offering http-01 is refused.
func TestACMEHTTP01(t *testing.T) {
	t.Parallel()
	httpAddr := testport.Unused(t)
	pb := testpebble.StartWith(t, testpebble.Options{HTTPPort: portOf(t, httpAddr), Validity: time.Hour})
	e := newEnv(t)
	up := newEchoServer(t, nil)
	config := issuerYAML("web", pb, "  challenges: [http-01]\n") + yamlEndpoint("www", "www.http.test", up.addr(), "edge", "  issuer: web\n")
	e.start(config, func(o *Options) { o.HTTPListen = httpAddr })
	status := func() []admin.EndpointStatus { return e.d.Status().Endpoints }

	issuedBy(t, e, status, "www", "http-01", "www.http.test", pb.Roots())
	if got := e.d.Status().HTTPListen; got != httpAddr {
		t.Errorf("status http_listen %q, want %q", got, httpAddr)
	}
	e.log.waitFor(t, "answered an ACME http-01 validation", "host=www.http.test")

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
	get := func(host, path string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+path, nil)
		req.Host = host
		resp, err := client.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp
	}
	resp := get("WWW.http.test:80", "/a/b?c=d")
	want := fmt.Sprintf("https://www.http.test:%d/a/b?c=d", portOf(t, e.addr()))
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("plain HTTP request: %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if resp := get("nobody.test", "/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("request for a domain nobody serves: %d, want 404", resp.StatusCode)
	}

	_, err := Start(loadConfig(t, e.path("endpoints.yaml")), Options{Listen: "127.0.0.1:0", StateDir: t.TempDir(), Logger: slogTo(e.log)})
	if err == nil || !strings.Contains(err.Error(), "--http-listen") {
		t.Errorf("http-01 without an HTTP listener: Start error %v, want one naming --http-listen", err)
	}
}

// TestACMEExternalAccountBinding: with a CA that requires external account binding, an
// issuer without external_account fails with the CA's reason; given the key ID and MAC
// key, the same issuer gets its certificate.
func TestACMEExternalAccountBinding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	listen := e.preBind()
	mac := make([]byte, 32)
	rand.Read(mac)
	pb := testpebble.StartWith(t, testpebble.Options{TLSPort: portOf(t, listen), Validity: time.Hour,
		EAB: map[string]string{"kid-1": base64.RawURLEncoding.EncodeToString(mac)}})
	up := newEchoServer(t, nil)
	endpoint := yamlEndpoint("eab", "eab.test", up.addr(), "edge", "  issuer: ca\n")
	e.start(issuerYAML("ca", pb, "")+endpoint, func(o *Options) { o.Listen = listen; o.ACMERetryBase = time.Minute })
	status := func() []admin.EndpointStatus { return e.d.Status().Endpoints }

	failed := waitCertificate(t, status, "eab", "failed", isFailed, e.log)
	if !strings.Contains(failed.Error, "externalAccountRequired") {
		t.Errorf("without external_account: error %q, want the CA's externalAccountRequired", failed.Error)
	}
	must(t, os.WriteFile(e.path("eab.key"), []byte(base64.RawURLEncoding.EncodeToString(mac)+"\n"), 0o600))
	must(t, os.WriteFile(e.path("endpoints.yaml"), []byte(issuerYAML("ca", pb, "  external_account: {key_id: kid-1, mac_key_file: eab.key}\n")+endpoint), 0o644))
	_, err := e.d.Apply(loadConfig(t, e.path("endpoints.yaml")))
	must(t, err)
	issuedBy(t, e, status, "eab", "tls-alpn-01", "eab.test", pb.Roots())
}

// TestAgentOrdersByDNS01: an agent-terminated endpoint names an issuer offering dns-01;
// the agent, which needs no inbound port, orders and keeps the certificate, clients get
// it through the edge, and the edge holds no key and sees only TLS records.
func TestAgentOrdersByDNS01(t *testing.T) {
	t.Parallel()
	knot := testknot.Start(t, "nat.test")
	pb := testpebble.StartWith(t, testpebble.Options{Validity: time.Hour, DNSServer: knot.Addr})
	plain := newEchoServer(t, nil)
	agentState := t.TempDir()
	config := issuerYAML("knot", pb, rfc2136YAML(knot, knot.SecretFile)) +
		yamlEndpoint("home", "home.nat.test", plain.addr(), "agent", "  issuer: knot\n") + "agent: api-agent\n"
	var mu sync.Mutex
	var first []byte
	s := startSplit(t, config, func(next func(context.Context, tunnel.Header, net.Conn)) func(context.Context, tunnel.Header, net.Conn) {
		return func(ctx context.Context, h tunnel.Header, st net.Conn) {
			cc := &capturingConn{Conn: st}
			next(ctx, h, cc)
			mu.Lock()
			first = cc.first
			mu.Unlock()
		}
	}, func(o *Options) { o.StateDir = agentState })
	issuedBy(t, s.env, func() []admin.EndpointStatus { return s.agent.Status().Endpoints }, "home", "dns-01", "home.nat.test", pb.Roots())
	mu.Lock()
	got := first
	mu.Unlock()
	if !eventually(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); got = first; return len(got) >= 3 }) || got[0] != 22 {
		t.Errorf("the agent received % x...; want the client's TLS handshake record", got)
	}
	for _, ep := range s.d.Status().Endpoints {
		if c := ep.Certificate; c != nil && c.HeldBy != "api-agent" {
			t.Errorf("the edge reports a certificate of its own for %s: %+v", ep.Name, c)
		}
	}
	if keys := privateKeysUnder(t, s.stateDir); len(keys) > 0 {
		t.Errorf("the edge's state holds private keys: %v", keys)
	}
	if keys := privateKeysUnder(t, agentState); len(keys) == 0 {
		t.Errorf("the agent's state holds no private key; where is the certificate's?")
	}
}

// privateKeysUnder lists the files below dir that hold a PEM private key.
func privateKeysUnder(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), "PRIVATE KEY") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
