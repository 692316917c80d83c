package tunnel

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/localca"
)

// tunnelFiles issues, from ca, a certificate for name (a client one when client) and
// writes it with its key beside the CA's certificate.
func tunnelFiles(t *testing.T, ca *localca.CA, dir, name string, client bool) (crt, key, caFile string) {
	t.Helper()
	l := localca.Leaf{CommonName: name, DNSNames: []string{name}, Client: client, Lifetime: time.Hour}
	if !client {
		l.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	c, err := ca.Issue(l)
	must(t, err)
	crt, key, caFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, "ca.crt")
	must(t, localca.WriteFiles(c, crt, key))
	must(t, os.WriteFile(caFile, ca.RootPEM(), 0o644))
	return crt, key, caFile
}

// handshake runs a real TLS handshake between the edge's and the agent's tunnel
// configurations and returns the serials each side saw of the other.
func handshake(t *testing.T, edgeSide, agentSide *PKI) (edgeSerial, agentSerial string, err error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, edgeSide.ServerTLS())
	cfg := agentSide.ClientTLS()
	cfg.ServerName = "127.0.0.1"
	cli := tls.Client(b, cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		<-done
		return "", "", err
	}
	if err := <-done; err != nil {
		return "", "", err
	}
	return cli.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), srv.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// TestTunnelPKIReloads: both sides' credentials are read again on Reload, handshakes
// after it use the new ones; files that do not load, or an agent certificate naming
// another agent, leave the ones in use and say why.
func TestTunnelPKIReloads(t *testing.T) {
	dir := t.TempDir()
	ca, err := localca.OpenNamed(filepath.Join(dir, "state"), "tlsd tunnel CA", nil)
	must(t, err)
	ecrt, ekey, cafile := tunnelFiles(t, ca, dir, "edge", false)
	acrt, akey, _ := tunnelFiles(t, ca, dir, "api-agent", true)
	edgeSide, err := LoadPKI(ecrt, ekey, cafile, false)
	must(t, err)
	agentSide, err := LoadPKI(acrt, akey, cafile, true)
	must(t, err)
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))

	e1, a1, err := handshake(t, edgeSide, agentSide)
	must(t, err)
	tunnelFiles(t, ca, dir, "edge", false)
	tunnelFiles(t, ca, dir, "api-agent", true)
	edgeSide.Reload(logger)
	agentSide.Reload(logger)
	e2, a2, err := handshake(t, edgeSide, agentSide)
	must(t, err)
	if e2 == e1 || a2 == a1 || e2 != serial(edgeSide) || a2 != serial(agentSide) {
		t.Errorf("after the rotation the handshake saw edge %s (was %s), agent %s (was %s); status says %s and %s",
			e2, e1, a2, a1, serial(edgeSide), serial(agentSide))
	}

	must(t, os.WriteFile(akey, []byte("not a key"), 0o600))
	agentSide.Reload(logger)
	if serial(agentSide) != a2 || !strings.Contains(agentSide.LastError(), "api-agent.key") {
		t.Errorf("a broken key file: serial %s, error %q; want the old certificate and the reason", serial(agentSide), agentSide.LastError())
	}
	tunnelFiles(t, ca, dir, "other-agent", true)
	must(t, os.Rename(filepath.Join(dir, "other-agent.crt"), acrt))
	must(t, os.Rename(filepath.Join(dir, "other-agent.key"), akey))
	agentSide.Reload(logger)
	if serial(agentSide) != a2 || !strings.Contains(agentSide.LastError(), `names "other-agent"`) {
		t.Errorf("a certificate for another agent: serial %s, error %q; want it refused", serial(agentSide), agentSide.LastError())
	}
	if _, a3, err := handshake(t, edgeSide, agentSide); err != nil || a3 != a2 {
		t.Errorf("after refused reloads the agent presented %s (%v), want %s", a3, err, a2)
	}
	// The edge's certificate may name other hosts after a renewal (agents dial a new name).
	tunnelFiles(t, ca, dir, "edge2", false)
	must(t, os.Rename(filepath.Join(dir, "edge2.crt"), ecrt))
	must(t, os.Rename(filepath.Join(dir, "edge2.key"), ekey))
	edgeSide.Reload(logger)
	if edgeSide.LastError() != "" || edgeSide.Leaf().DNSNames[0] != "edge2" {
		t.Errorf("an edge certificate for other names: error %q, names %v; want it taken", edgeSide.LastError(), edgeSide.Leaf().DNSNames)
	}
	if !strings.Contains(log.String(), "tunnel credentials reloaded") || !strings.Contains(log.String(), "not reloaded") {
		t.Errorf("the log does not tell the reloads:\n%s", log.String())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serial is the serial of the certificate p presents now.
func serial(p *PKI) string { return p.Leaf().SerialNumber.Text(16) }
