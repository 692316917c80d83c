package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// waitHealth polls h until up says what is wanted; a check runs at once and then every
// interval, so the deadline only ends a test that would hang.
func waitHealth(t *testing.T, h *Health, want bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); h.Status(time.Now()).Up != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("health stayed %+v, want up=%v", h.Status(time.Now()), want)
		}
	}
}

// TestTCPCheck: an address that accepts is up; once it refuses, the next check marks it
// down with the reason; Stop ends the checks.
func TestTCPCheck(t *testing.T) {
	ln := listen(t)
	h := &Health{}
	var c Checks
	defer c.Stop()
	c.Set([]Check{{Addr: ln.Addr().String(), Interval: 20 * time.Millisecond, Timeout: time.Second}}, func(string) *Health { return h })
	waitHealth(t, h, true)
	ln.Close()
	waitHealth(t, h, false)
	if st := h.Status(time.Now()); !strings.Contains(st.LastError, "refused") || st.LastCheck.IsZero() {
		t.Errorf("status %+v: want the refusal and the check's time", st)
	}
}

// TestHandshakeCheck: a handshake check fails on a server that accepts but speaks no TLS,
// passes on one that completes a handshake (liveness only: no CA given), and with a CA
// given fails on a certificate that does not chain to it.
func TestHandshakeCheck(t *testing.T) {
	ca, err := testpki.NewCA("checks CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(testpki.Options{CommonName: "up.test", DNSNames: []string{"up.test"}})
	pair, _ := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	tlsAddr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	other, _ := testpki.NewCA("another CA", time.Time{}, time.Time{})
	pool := x509.NewCertPool()
	pool.AddCert(other.Cert)
	cases := []struct {
		name string
		spec Check
		up   bool
	}{
		{"plain TCP server", Check{Addr: listen(t).Addr().String(), Handshake: true, ServerName: "up.test"}, false},
		{"TLS server, liveness", Check{Addr: tlsAddr, Handshake: true, ServerName: "up.test"}, true},
		{"TLS server, wrong CA", Check{Addr: tlsAddr, Handshake: true, ServerName: "up.test", TLS: &tls.Config{RootCAs: pool}}, false},
	}
	for _, c := range cases {
		c.spec.Interval, c.spec.Timeout = time.Hour, 2*time.Second
		h := &Health{}
		var checks Checks
		checks.Set([]Check{c.spec}, func(string) *Health { return h })
		for deadline := time.Now().Add(10 * time.Second); h.Status(time.Now()).LastCheck.IsZero(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no check ran", c.name)
			}
		}
		checks.Stop()
		if got := h.Status(time.Now()); got.Up != c.up {
			t.Errorf("%s: %+v, want up=%v", c.name, got, c.up)
		}
	}
}

// TestSetReplacesChecks: Set runs exactly the checks given: one per address however many
// endpoints share it, a changed one restarted, a dropped one stopped.
func TestSetReplacesChecks(t *testing.T) {
	a, b := listen(t).Addr().String(), listen(t).Addr().String()
	var c Checks
	defer c.Stop()
	h := map[string]*Health{a: {}, b: {}}
	health := func(addr string) *Health { return h[addr] }
	spec := Check{Addr: a, Interval: time.Hour, Timeout: time.Second}
	c.Set([]Check{spec, spec, {Addr: b, Interval: time.Hour, Timeout: time.Second}}, health)
	if len(c.running) != 2 {
		t.Fatalf("%d checks running for two addresses", len(c.running))
	}
	first := c.running[a]
	spec.Timeout = 2 * time.Second
	c.Set([]Check{spec}, health)
	if len(c.running) != 1 || c.running[a] == first || c.running[a].spec != spec {
		t.Errorf("after a change and a removal: %d running, restarted %v", len(c.running), c.running[a] != first)
	}
}

// tlsServer completes TLS handshakes with cfg until the test ends.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveEach(t, ln, func(c net.Conn) {
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.(*tls.Conn).Handshake()
		}()
	})
	return ln.Addr().String()
}
