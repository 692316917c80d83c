// Package testpebble runs Let's Encrypt's ACME test server, Pebble, and its DNS helper
// for tests, on loopback ports of their own (make test installs both).
package testpebble

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
	"testing"
	"time"

	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/internal/testport"
)

// pebbleVersion is the ACME test server the tests run (make test installs it).
const pebbleVersion = "v2.10.3"

// Pebble is Let's Encrypt's ACME test server and its DNS helper, on loopback ports.
type Pebble struct {
	t         testing.TB
	dir       string
	Directory string // the ACME directory URL
	mgmt      string
	Minica    string // the root of Pebble's own HTTPS
	dnsAddr   string
	// ChallTestSrv is the management API of its DNS helper (pebble-challtestsrv), where
	// TXT records are set and cleared; empty when Pebble asks another DNS server.
	ChallTestSrv string
	config       string
	cmd, dns     *exec.Cmd
	httpClient   *http.Client
}

// pebbleTool finds a Pebble binary; without one the test fails (CI must install it).
func pebbleTool(t testing.TB, name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	out, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is required: go install github.com/letsencrypt/pebble/v2/cmd/%s@%s (make test does it)", name, name, pebbleVersion)
	}
	return p
}

func pebbleSource(t testing.TB) string {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	check(t, err)
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "letsencrypt", "pebble", "v2@"+pebbleVersion, "test", "certs")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Pebble's test certificates are missing (%v): go install github.com/letsencrypt/pebble/v2/cmd/pebble@%s", err, pebbleVersion)
	}
	return dir
}

// Start runs Pebble validating TLS-ALPN-01 on tlsPort and issuing certificates
// that live validity, and its DNS server answering 127.0.0.1 for every name.
func Start(t testing.TB, tlsPort int, validity time.Duration) *Pebble {
	return StartWith(t, Options{TLSPort: tlsPort, Validity: validity})
}

// Options shape a Pebble run.
type Options struct {
	TLSPort, HTTPPort int           // where TLS-ALPN-01 and HTTP-01 are validated (0: a port nobody answers)
	Validity          time.Duration // of the certificates issued
	// DNSServer is the DNS server Pebble resolves names and DNS-01 records with; empty
	// starts pebble-challtestsrv, answering 127.0.0.1 for every name.
	DNSServer string
	// EAB, when set, makes external account binding required, with these key IDs and
	// base64url MAC keys.
	EAB map[string]string
}

// StartWith runs Pebble as o says.
func StartWith(t testing.TB, o Options) *Pebble {
	certsDir := pebbleSource(t)
	p := &Pebble{t: t, dir: t.TempDir(), Minica: filepath.Join(certsDir, "pebble.minica.pem"), dnsAddr: o.DNSServer}
	listen, mgmt := testport.Unused(t), testport.Unused(t)
	p.Directory, p.mgmt = "https://"+listen+"/dir", mgmt
	settings := map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": filepath.Join(certsDir, "localhost", "cert.pem"), "privateKey": filepath.Join(certsDir, "localhost", "key.pem"),
		"httpPort": portOr(t, o.HTTPPort), "tlsPort": portOr(t, o.TLSPort), "ocspResponderURL": "", "externalAccountBindingRequired": o.EAB != nil,
		"retryAfter": map[string]int{"authz": 0, "order": 0}, "keyAlgorithm": "ecdsa",
		"profiles": map[string]any{"default": map[string]any{"description": "short-lived for tests", "validityPeriod": int(o.Validity.Seconds())}},
	}
	if o.EAB != nil {
		settings["externalAccountMACKeys"] = o.EAB
	}
	cfg := map[string]any{"pebble": settings}
	data, _ := json.Marshal(cfg)
	p.config = filepath.Join(p.dir, "pebble.json")
	check(t, os.WriteFile(p.config, data, 0o644))
	roots := x509.NewCertPool()
	minica, err := os.ReadFile(p.Minica)
	check(t, err)
	roots.AppendCertsFromPEM(minica)
	p.httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}

	if p.dnsAddr == "" {
		p.startDNS()
	}
	p.Restart()
	t.Cleanup(p.Stop)
	return p
}

// Restart starts Pebble again after Stop (a new CA: Roots changes).
func (p *Pebble) Restart() {
	p.cmd = exec.Command(pebbleTool(p.t, "pebble"), "-config", p.config, "-dnsserver", p.dnsAddr, "-strict")
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	log, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("pebble-%d.log", time.Now().UnixNano())))
	check(p.t, err)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	check(p.t, p.cmd.Start())
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.httpClient.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pebble did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DNSServer is the DNS server Pebble resolves with.
func (p *Pebble) DNSServer() string { return p.dnsAddr }

// Stop ends Pebble.
func (p *Pebble) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// Roots is the CA that signs this Pebble run's certificates (it changes every start).
func (p *Pebble) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, path := range []string{"/roots/0", "/intermediates/0"} {
		resp, err := p.httpClient.Get("https://" + p.mgmt + path)
		check(p.t, err)
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		list, err := certs.ParseCertificates(data)
		check(p.t, err)
		for _, c := range list {
			pool.AddCert(c)
		}
	}
	return pool
}

// startDNS runs pebble-challtestsrv as Pebble's DNS server.
func (p *Pebble) startDNS() {
	p.dnsAddr, p.ChallTestSrv = testport.Unused(p.t), testport.Unused(p.t)
	p.dns = exec.Command(pebbleTool(p.t, "pebble-challtestsrv"), "-dnsserver", p.dnsAddr, "-defaultIPv4", "127.0.0.1",
		"-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", p.ChallTestSrv)
	p.dns.Stdout, p.dns.Stderr = io.Discard, io.Discard
	check(p.t, p.dns.Start())
	p.t.Cleanup(func() { p.dns.Process.Kill(); p.dns.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", p.ChallTestSrv); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("pebble-challtestsrv did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOr(t testing.TB, port int) int {
	if port != 0 {
		return port
	}
	return freeTCPPort(t)
}

func freeTCPPort(t testing.TB) int {
	_, p, _ := net.SplitHostPort(testport.Unused(t))
	var n int
	fmt.Sscan(p, &n)
	return n
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
