// Package testknot runs a real authoritative DNS server, Knot DNS, for tests: one zone on
// a loopback port of its own that answers 127.0.0.1 for every name in it and takes
// dynamic updates (RFC 2136) signed with a TSIG key, as a zone's primary server does for
// ACME DNS-01 (make test installs knot).
package testknot

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsd/tlsd/internal/testport"
)

// KeyName is the TSIG key the server accepts updates signed with.
const KeyName = "tlsd-test."

// Server is one knotd serving Zone.
type Server struct {
	Addr       string // host:port, UDP and TCP
	Zone       string // fully qualified
	SecretFile string // the TSIG secret, base64, mode 0600
	Secret     string
	cmd        *exec.Cmd
}

// Start runs knotd with zone; the test fails without one (CI installs it).
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	knotd, err := exec.LookPath("knotd")
	if err != nil {
		t.Fatal("knotd is required (apt-get install knot; .ci/run installs it)")
	}
	dir := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	s := &Server{Addr: testport.Unused(t), Zone: dns.Fqdn(zone), Secret: base64.StdEncoding.EncodeToString(key),
		SecretFile: filepath.Join(dir, "tsig.key")}
	host, port, _ := net.SplitHostPort(s.Addr)
	check(t, os.WriteFile(s.SecretFile, []byte(s.Secret+"\n"), 0o600))
	check(t, os.WriteFile(filepath.Join(dir, "zone"), []byte(zoneFile(s.Zone)), 0o644))
	conf := filepath.Join(dir, "knot.conf")
	check(t, os.WriteFile(conf, []byte(config(dir, host, port, s)), 0o644))
	log, err := os.Create(filepath.Join(dir, "knotd.log"))
	check(t, err)
	s.cmd = exec.Command(knotd, "-c", conf)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	check(t, s.cmd.Start())
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait(); log.Close() })
	s.waitReady(t, filepath.Join(dir, "knotd.log"))
	return s
}

func zoneFile(zone string) string {
	return fmt.Sprintf(`$ORIGIN %s
$TTL 30
@ SOA ns.%s hostmaster.%s 1 30 30 300 30
@ NS ns.%s
ns A 127.0.0.1
@ A 127.0.0.1
* A 127.0.0.1
`, zone, zone, zone, zone)
}

func config(dir, host, port string, s *Server) string {
	return fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: %[2]s@%[3]s
database:
    storage: "%[1]s"
log:
  - target: stderr
    any: info
key:
  - id: %[4]s
    algorithm: hmac-sha256
    secret: %[5]s
acl:
  - id: update
    key: %[4]s
    action: update
zone:
  - domain: %[6]s
    storage: "%[1]s"
    file: "zone"
    acl: update
    zonefile-sync: -1
    journal-content: none
`, dir, host, port, KeyName, s.Secret, s.Zone)
}

// waitReady waits until the zone answers over TCP.
func (s *Server) waitReady(t testing.TB, logFile string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, err := s.query(s.Zone, dns.TypeSOA); err == nil && m.Rcode == dns.RcodeSuccess {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile)
			t.Fatalf("knotd did not serve %s on %s:\n%s", s.Zone, s.Addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) query(name string, qtype uint16) (*dns.Msg, error) {
	return query(s.Addr, name, qtype)
}

func query(server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	return r, err
}

// TXT is the text of every TXT record at name.
func (s *Server) TXT(t testing.TB, name string) []string { return LookupTXT(t, s.Addr, name) }

// LookupTXT asks server (over TCP) for the TXT records at name.
func LookupTXT(t testing.TB, server, name string) []string {
	t.Helper()
	r, err := query(server, name, dns.TypeTXT)
	check(t, err)
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
