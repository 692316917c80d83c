package termination

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// server serves TLS with cfg on loopback: each connection writes one byte after its
// handshake (so a TLS 1.3 client reads the session ticket that precedes it) and closes.
func server(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() == nil {
					tc.Write([]byte{1})
					io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// site is a certificate for name and the pool that trusts it.
func site(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := testpki.NewCA("termination test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.Options{CommonName: name, DNSNames: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return pair, roots
}

// oneSession offers the client one chosen session and keeps the last one it was given.
type oneSession struct {
	mu           sync.Mutex
	offer, given *tls.ClientSessionState
}

func (c *oneSession) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offer, c.offer != nil
}

func (c *oneSession) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.given = cs
		c.mu.Unlock()
	}
}

// dial connects, reads the server's byte, and reports whether the session resumed.
func dial(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer tc.Close()
	if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return tc.ConnectionState().DidResume
}

// TestTicketsThatDoNotOpen: a ticket tlsd cannot open (tampered, cut short, sealed by
// an unknown key or by another endpoint) costs the client a full handshake, never an
// error; an intact one resumes.
func TestTicketsThatDoNotOpen(t *testing.T) {
	pair, roots := site(t, "a.test")
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
	addr := server(t, ServerConfig(Policy{GetCertificate: get}))
	other := server(t, ServerConfig(Policy{GetCertificate: get}))
	cache := &oneSession{}
	client := &tls.Config{ServerName: "a.test", RootCAs: roots, ClientSessionCache: cache}
	dial(t, addr, client)
	ticket, state, err := cache.given.ResumptionState()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), ticket...)) }
	cases := []struct {
		name   string
		addr   string
		ticket []byte
		resume bool
	}{
		{"intact", addr, ticket, true},
		{"tampered ciphertext", addr, edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), false},
		{"unknown key name", addr, edit(func(b []byte) []byte { b[0] ^= 1; return b }), false},
		{"cut short", addr, ticket[:keyNameLen+3], false},
		{"another endpoint's ticket", other, ticket, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			offer, err := tls.NewResumptionState(c.ticket, state)
			if err != nil {
				t.Fatal(err)
			}
			cache.mu.Lock()
			cache.offer = offer
			cache.mu.Unlock()
			if got := dial(t, c.addr, client); got != c.resume {
				t.Errorf("resumed = %v, want %v", got, c.resume)
			}
		})
	}
}

// TestServerConfigPolicy: versions, suites, mutual TLS and the ACME challenge hook.
func TestServerConfigPolicy(t *testing.T) {
	pair, _ := site(t, "a.test")
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
	if c := ServerConfig(Policy{GetCertificate: get}); c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert {
		t.Errorf("default: min %s, client auth %v", tls.VersionName(c.MinVersion), c.ClientAuth)
	}
	for _, id := range ServerConfig(Policy{}).CipherSuites {
		for _, insecure := range tls.InsecureCipherSuites() {
			if id == insecure.ID {
				t.Errorf("offers insecure suite %s", insecure.Name)
			}
		}
	}
	if c := ServerConfig(Policy{MinVersion: tls.VersionTLS13}); c.MinVersion != tls.VersionTLS13 {
		t.Errorf("min version %s, want TLS 1.3", tls.VersionName(c.MinVersion))
	}
	if c := ServerConfig(Policy{MinVersion: tls.VersionTLS10}); c.MinVersion != tls.VersionTLS12 {
		t.Errorf("a policy asking for TLS 1.0 got min %s: tlsd never goes below TLS 1.2", tls.VersionName(c.MinVersion))
	}
	if c := ServerConfig(Policy{ClientCAs: x509.NewCertPool()}); c.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("mutual TLS: client auth %v", c.ClientAuth)
	}
	challenge := &tls.Config{NextProtos: []string{ACMEALPN}}
	c := ServerConfig(Policy{GetCertificate: get, Challenge: challenge})
	for _, tc := range []struct {
		protos []string
		want   *tls.Config
	}{
		{[]string{ACMEALPN}, challenge},
		{[]string{"h2", ACMEALPN}, nil}, // only a validation offers acme-tls/1 alone
		{[]string{"h2"}, nil},
		{nil, nil},
	} {
		got, err := c.GetConfigForClient(&tls.ClientHelloInfo{SupportedProtos: tc.protos})
		if err != nil || got != tc.want {
			t.Errorf("ALPN %v: config %p, %v; want %p", tc.protos, got, err, tc.want)
		}
	}
}

func TestMatchDNS(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"api.example.com", "api.example.com", true},
		{"api.example.com", "API.Example.com.", true},
		{"*.svc.example.com", "pay.svc.example.com", true},
		{"*.svc.example.com", "a.pay.svc.example.com", false},
		{"*.svc.example.com", "svc.example.com", false},
		{"*.svc.example.com", ".svc.example.com", false},
		{"api.example.com", "*.example.com", false},
	}
	for _, c := range cases {
		if got := matchDNS(c.pattern, c.name); got != c.want {
			t.Errorf("matchDNS(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// TestDescribeCertIsBounded: a refusal quotes a certificate's fields, which its holder
// wrote: each is cut and escaped, and only a few of each kind are listed.
func TestDescribeCertIsBounded(t *testing.T) {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("A", 10000) + "\n"}}
	for i := range 50 {
		c.DNSNames = append(c.DNSNames, fmt.Sprintf("n%d.example.com", i))
	}
	got := describeCert(c)
	if len(got) > 300 || strings.Contains(got, "\n") || !strings.Contains(got, "(10001 bytes)") || !strings.Contains(got, "(+47 DNS)") {
		t.Errorf("describeCert = %q (%d bytes)", got, len(got))
	}
}

type fixedSecrets []TicketSecret

func (f fixedSecrets) TicketSecrets() []TicketSecret { return f }

// TestSharedTicketSecrets: two servers given the same secrets and scope (two edges of a
// fleet) resume each other's tickets; another scope (another endpoint) does not; a secret
// published ahead of its time opens tickets but does not seal them yet.
func TestSharedTicketSecrets(t *testing.T) {
	pair, roots := site(t, "a.test")
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
	now := time.Now()
	secret := func(b byte, active time.Time) TicketSecret {
		s := TicketSecret{ActiveAt: active}
		s.Name[0], s.Secret[0] = b, b
		return s
	}
	current, next := secret(1, now.Add(-time.Minute)), secret(2, now.Add(time.Minute))
	fleet := fixedSecrets{next, current}
	edgeA := server(t, ServerConfig(Policy{GetCertificate: get, Tickets: fleet, TicketScope: "web"}))
	edgeB := server(t, ServerConfig(Policy{GetCertificate: get, Tickets: fleet, TicketScope: "web"}))
	otherEndpoint := server(t, ServerConfig(Policy{GetCertificate: get, Tickets: fleet, TicketScope: "api"}))
	alone := server(t, ServerConfig(Policy{GetCertificate: get}))
	cache := &oneSession{}
	client := &tls.Config{ServerName: "a.test", RootCAs: roots, ClientSessionCache: cache}
	dial(t, edgeA, client)
	ticket, state, err := cache.given.ResumptionState()
	if err != nil {
		t.Fatal(err)
	}
	if ticket[0] != 1 {
		t.Errorf("sealed with secret %d, want the active one (1), not the one published ahead", ticket[0])
	}
	for _, c := range []struct {
		name, addr string
		resume     bool
	}{{"the same endpoint on another edge", edgeB, true}, {"another endpoint", otherEndpoint, false}, {"a server without the secrets", alone, false}} {
		offer, _ := tls.NewResumptionState(ticket, state)
		cache.mu.Lock()
		cache.offer = offer
		cache.mu.Unlock()
		if got := dial(t, c.addr, client); got != c.resume {
			t.Errorf("%s: resumed = %v, want %v", c.name, got, c.resume)
		}
	}
}
