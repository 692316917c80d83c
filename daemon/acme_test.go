package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/internal/testpebble"
)

// pebble is the ACME test server (internal/testpebble) as these tests use it.
type pebble struct {
	*testpebble.Pebble
	directory, minica string
}

func startPebble(t *testing.T, tlsPort int, validity time.Duration) *pebble {
	p := testpebble.Start(t, tlsPort, validity)
	return &pebble{Pebble: p, directory: p.Directory, minica: p.Minica}
}

func (p *pebble) roots() *x509.CertPool { return p.Roots() }
func (p *pebble) start()                { p.Restart() }
func (p *pebble) stop()                 { p.Stop() }

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	must(t, err)
	n, err := strconv.Atoi(p)
	must(t, err)
	return n
}

// TestACMEWithPebble: an endpoint with an ACME issuer serves at once, gets its
// certificate from Pebble through TLS-ALPN-01 answered on its own listener, renews it
// without dropping an open connection, reports a failing issuer in /status without
// harming other endpoints, and recovers when the issuer comes back.
func TestACMEWithPebble(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	listen := e.preBind()
	pb := startPebble(t, portOf(t, listen), 9*time.Second)
	config := fmt.Sprintf("apiVersion: tlsd/v1\nkind: Issuer\nname: pebble\nacme:\n  directory: %s\n  email: ops@acme.test\n  ca_roots: [%s]\n",
		pb.directory, pb.minica) +
		yamlEndpoint("acme", "acme.test", up.addr(), "edge", "  issuer: pebble\n") +
		yamlEndpoint("other", "other.test", up.addr(), "edge", "  issuer: internal\n")
	start := time.Now()
	e.start(config, func(o *Options) { o.Listen = listen; o.ACMERetryBase = 300 * time.Millisecond })

	acmeStatus := func() *admin.CertificateStatus {
		for _, ep := range e.d.Status().Endpoints {
			if ep.Name == "acme" {
				return ep.Certificate
			}
		}
		return nil
	}
	waitState := func(what string, ok func(*admin.CertificateStatus) bool) *admin.CertificateStatus {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if st := acmeStatus(); st != nil && ok(st) {
				return st
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("certificate never %s: %+v\n%s", what, acmeStatus(), e.log.String())
		return nil
	}
	dial := func(roots *x509.CertPool) (*tls.Conn, error) {
		return e.dialTLS(&tls.Config{ServerName: "acme.test", RootCAs: roots})
	}

	// First issuance: the endpoint serves as soon as the certificate exists, no reload.
	first := waitState("valid", func(s *admin.CertificateStatus) bool { return s.State == "valid" })
	roots := pb.roots()
	conn, err := dial(roots)
	must(t, err)
	defer conn.Close()
	t.Logf("issuance latency, endpoint added to first successful handshake: %s", time.Since(start).Round(time.Millisecond))
	if sn := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); sn != first.Serial {
		t.Errorf("served serial %s, status says %s", sn, first.Serial)
	}
	echoOnce(t, conn, "before renewal")

	// Renewal at two thirds of the 9 s lifetime: new handshakes get the new certificate,
	// the open connection carries on.
	second := waitState("renewed", func(s *admin.CertificateStatus) bool { return s.State == "valid" && s.Serial != first.Serial })
	echoOnce(t, conn, "after renewal")
	c2, err := dial(roots)
	must(t, err)
	if sn := c2.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); sn != second.Serial {
		t.Errorf("after renewal a new handshake got serial %s, want %s", sn, second.Serial)
	}
	c2.Close()

	// The issuer goes down: the next renewal fails, status says why and when it retries,
	// the other endpoint is untouched.
	pb.stop()
	failed := waitState("failed", func(s *admin.CertificateStatus) bool { return s.State == "failed" })
	if failed.Error == "" || failed.NextRetry.IsZero() {
		t.Errorf("failed status without reason or retry time: %+v", failed)
	}
	oc, err := e.dialTLS(&tls.Config{ServerName: "other.test", RootCAs: e.internalRoots()})
	must(t, err)
	oc.Close()
	echoOnce(t, conn, "issuer down")

	// The issuer is back: the retry succeeds.
	pb.start()
	back := waitState("recovered", func(s *admin.CertificateStatus) bool { return s.State == "valid" && s.Serial != second.Serial })
	c3, err := dial(pb.roots())
	must(t, err)
	if sn := c3.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); sn != back.Serial {
		t.Errorf("after recovery a new handshake got serial %s, want %s", sn, back.Serial)
	}
	c3.Close()
	echoOnce(t, conn, "the first connection outlived three certificates")
}

// TestACMEIssuerDownIsContained: with an ACME server that cannot be reached, the
// endpoint is live at once and its handshakes fail with the reason, status shows the
// failure and the next try, and endpoints of other issuers serve as usual.
func TestACMEIssuerDownIsContained(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	config := "apiVersion: tlsd/v1\nkind: Issuer\nname: down\nacme:\n  directory: https://" + freePort(t) + "/dir\n" +
		yamlEndpoint("acme", "acme.test", up.addr(), "edge", "  issuer: down\n") +
		yamlEndpoint("other", "other.test", up.addr(), "edge", "  issuer: internal\n")
	e.start(config, func(o *Options) { o.ACMERetryBase = 200 * time.Millisecond })
	err := handshakeAndRead(e, &tls.Config{ServerName: "acme.test", InsecureSkipVerify: true})
	if err == nil {
		t.Fatal("a handshake succeeded without a certificate")
	}
	e.log.waitFor(t, "connection failed", "sni=acme.test", "certificate not issued yet")
	deadline := time.Now().Add(5 * time.Second)
	var st *admin.CertificateStatus
	for time.Now().Before(deadline) {
		for _, ep := range e.d.Status().Endpoints {
			if ep.Name == "acme" {
				st = ep.Certificate
			}
		}
		if st != nil && st.State == "failed" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st == nil || st.State != "failed" || !strings.Contains(st.Error, "connection refused") || st.NextRetry.IsZero() {
		t.Errorf("status = %+v", st)
	}
	must(t, handshakeAndRead(e, &tls.Config{ServerName: "other.test", RootCAs: e.internalRoots()}))
	_, metrics := get(t, e.d.AdminHandler(), "/metrics")
	if !strings.Contains(metrics, `tlsd_acme_orders_total{challenge="tls-alpn-01",issuer="down",result="failed"}`) ||
		!strings.Contains(metrics, `tlsd_connection_failures_total{endpoint="acme",reason="certificate_pending"}`) {
		t.Errorf("metrics lack the failed orders or pending handshakes:\n%s", metrics)
	}
}

// TestACMESharedStorageAndModeSwitches: two tlsd sharing a state directory order one
// certificate, not two; switching an endpoint between ACME, internal and a custom
// certificate is an ordinary reload.
func TestACMESharedStorageAndModeSwitches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	listen := e.preBind()
	pb := startPebble(t, portOf(t, listen), time.Hour)
	issuer := fmt.Sprintf("apiVersion: tlsd/v1\nkind: Issuer\nname: pebble\nacme:\n  directory: %s\n  ca_roots: [%s]\n", pb.directory, pb.minica)
	acmeEP := yamlEndpoint("site", "site.test", up.addr(), "edge", "  issuer: pebble\n")
	e.start(issuer+acmeEP, func(o *Options) {
		o.Listen = listen
		o.ACMERetryBase = 200 * time.Millisecond
	})
	res := loadConfig(t, e.path("endpoints.yaml"))
	twin, err := Start(res, Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, Logger: slogTo(io.Discard), ACMERetryBase: 200 * time.Millisecond})
	must(t, err)
	defer twin.Shutdown(t.Context())
	serial := func(d *Daemon) string {
		for _, ep := range d.Status().Endpoints {
			if ep.Certificate != nil && ep.Certificate.State == "valid" {
				return ep.Certificate.Serial
			}
		}
		return ""
	}
	deadline := time.Now().Add(20 * time.Second)
	for (serial(e.d) == "" || serial(twin) == "") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a, b := serial(e.d), serial(twin); a == "" || a != b {
		t.Fatalf("serials %q and %q: the two processes did not share one certificate", a, b)
	}
	_, m1 := get(t, e.d.AdminHandler(), "/metrics")
	_, m2 := get(t, twin.AdminHandler(), "/metrics")
	orders := strings.Count(m1+m2, `tlsd_acme_orders_total{challenge="tls-alpn-01",issuer="pebble",result="ok"} 1`)
	if orders != 1 {
		t.Errorf("%d successful orders across the two processes, want exactly 1", orders)
	}

	issuerOf := func() string {
		c, err := e.dialTLS(&tls.Config{ServerName: "site.test", InsecureSkipVerify: true})
		must(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Issuer.CommonName
	}
	if is := issuerOf(); !strings.Contains(strings.ToLower(is), "pebble") {
		t.Errorf("ACME endpoint presents a certificate from %q", is)
	}
	must(t, e.apply(issuer+yamlEndpoint("site", "site.test", up.addr(), "edge", "  issuer: internal\n")))
	if is := issuerOf(); !strings.HasPrefix(is, "tlsd local CA") {
		t.Errorf("after switching to internal: %q", is)
	}
	e.leaf(e.agentCA, "site", "site.test")
	must(t, e.apply(issuer+yamlEndpoint("site", "site.test", up.addr(), "edge", "  certificate: {crt: site.crt, key: site.key}\n")))
	if is := issuerOf(); is != "agent CA" {
		t.Errorf("after switching to a custom certificate: %q", is)
	}
	must(t, e.apply(issuer+acmeEP))
	if is := issuerOf(); !strings.Contains(strings.ToLower(is), "pebble") {
		t.Errorf("back on ACME (the stored certificate): %q", is)
	}
}

// TestACMEStoredCertificateOutlivesRestart: a restart late in a certificate's life, with
// the ACME server down, serves the stored certificate (still valid) while renewal is
// retried, instead of nothing until a new order succeeds.
func TestACMEStoredCertificateOutlivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	listen := e.preBind()
	// Long enough that issuance under a loaded machine leaves time after two thirds of it.
	pb := startPebble(t, portOf(t, listen), 24*time.Second)
	config := fmt.Sprintf("apiVersion: tlsd/v1\nkind: Issuer\nname: pebble\nacme:\n  directory: %s\n  ca_roots: [%s]\n", pb.directory, pb.minica) +
		yamlEndpoint("site", "site.test", up.addr(), "edge", "  issuer: pebble\n")
	e.start(config, func(o *Options) { o.Listen = listen; o.ACMERetryBase = 200 * time.Millisecond })
	var leaf *admin.CertificateStatus
	if !eventually(20*time.Second, func() bool {
		st := e.d.Status().Endpoints[0].Certificate
		leaf = st
		return st != nil && st.State == "valid"
	}) {
		t.Fatalf("no certificate: %+v\n%s", leaf, e.log)
	}
	roots := pb.roots()
	tc, err := e.dialTLS(&tls.Config{ServerName: "site.test", RootCAs: roots})
	must(t, err)
	stored := tc.ConnectionState().PeerCertificates[0]
	tc.Close()
	pb.stop()
	must(t, e.d.Shutdown(context.Background()))

	// Restart once the certificate is due for renewal and the ACME server is still down.
	due := stored.NotBefore.Add(stored.NotAfter.Sub(stored.NotBefore)*2/3 + 100*time.Millisecond)
	time.Sleep(time.Until(due))
	res := loadConfig(t, e.path("endpoints.yaml"))
	restarted, err := Start(res, Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, Logger: slogTo(e.log), ACMERetryBase: 200 * time.Millisecond})
	must(t, err)
	defer restarted.Shutdown(context.Background())
	if time.Now().After(stored.NotAfter) {
		t.Fatalf("the certificate expired before the restart could be checked (not after %s)", stored.NotAfter)
	}
	c, err := tls.Dial("tcp", restarted.Addr("").String(), &tls.Config{ServerName: "site.test", RootCAs: roots})
	if err != nil {
		t.Fatalf("after a restart with a stored, still valid certificate and the ACME server down: %v\n%s", err, e.log)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(stored.SerialNumber) != 0 {
		t.Errorf("served serial %s, want the stored %s", got.Text(16), stored.SerialNumber.Text(16))
	}
	e.log.waitFor(t, "certificate loaded from storage", "due_for_renewal=true")
}
