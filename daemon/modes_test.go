package daemon

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// world starts tlsd with one endpoint of each kind in front of echo upstreams.
type world struct {
	*env
	plain, zk *echoServer
}

func newWorld(t *testing.T, opts ...func(*Options)) *world {
	e := newEnv(t)
	w := &world{env: e, plain: newEchoServer(t, nil), zk: e.tlsUpstream("zk.test")}
	e.leaf(e.agentCA, "agent", "agent.test")
	internal := "  issuer: internal\n"
	e.start(
		yamlEndpoint("edge", "edge.test", w.plain.addr(), "edge", internal)+
			yamlEndpoint("edge13", "edge13.test", w.plain.addr(), "edge", internal+"  min_version: \"1.3\"\n")+
			yamlEndpoint("mtls", "mtls.test", w.plain.addr(), "edge", internal+"  mutual_tls:\n    certificate_authorities: [clients-ca.crt]\n")+
			yamlEndpoint("agent", "agent.test", w.plain.addr(), "agent", "  certificate: {crt: agent.crt, key: agent.key}\n")+
			yamlEndpoint("zk", "zk.test", w.zk.addr(), "", "")+
			yamlEndpoint("wild", "*.wild.test", w.zk.addr(), "", ""),
		opts...)
	return w
}

// recordingConn keeps a copy of every byte the client writes to the socket.
type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	wrote bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.wrote.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func TestModesEcho(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cases := []struct {
		sni, wantIssuer, mode string
		roots                 *x509.CertPool
	}{
		{"edge.test", "tlsd local CA", "edge", w.internalRoots()},
		{"agent.test", "agent CA", "agent", pool(w.agentCA)},
		{"zk.test", "upstream CA", "upstream", pool(w.upstreamCA)},
		{"tenant-a.wild.test", "", "upstream", nil}, // the upstream has no cert for it: only routing is checked
	}
	for _, c := range cases {
		t.Run(c.sni, func(t *testing.T) {
			raw, err := net.Dial("tcp", w.addr())
			must(t, err)
			rec := &recordingConn{Conn: raw}
			cfg := &tls.Config{ServerName: c.sni, RootCAs: c.roots}
			if c.roots == nil {
				cfg.InsecureSkipVerify = true
			}
			tc := tls.Client(rec, cfg)
			must(t, tc.Handshake())
			if c.wantIssuer != "" {
				issuer := tc.ConnectionState().PeerCertificates[0].Issuer.CommonName
				if !strings.HasPrefix(issuer, c.wantIssuer) {
					t.Errorf("certificate issued by %q, want %q: the wrong side terminated TLS", issuer, c.wantIssuer)
				}
			}
			msg := []byte("hello through " + c.mode)
			got, err := roundTrip(tc, msg)
			must(t, err)
			if !bytes.Equal(got, msg) {
				t.Errorf("echo = %q, want %q", got, msg)
			}
			tc.Close()
			w.log.waitFor(t, "connection closed", "sni="+c.sni, "mode="+c.mode)
			if c.mode == "upstream" && c.roots != nil {
				// Zero-knowledge: the upstream received exactly the client's TLS records.
				rec.mu.Lock()
				sent := bytes.Clone(rec.wrote.Bytes())
				rec.mu.Unlock()
				deadline := time.Now().Add(2 * time.Second)
				for !bytes.Equal(w.zk.rawBytes(), sent) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if got := w.zk.rawBytes(); !bytes.Equal(got, sent) {
					t.Errorf("upstream received %d bytes, client sent %d; they differ", len(got), len(sent))
				}
			}
		})
	}
}

// TestInternalChainVerifiesAgainstCA: the internal issuer's certificate verifies against
// the root `tlsd ca` prints, for the endpoint's exact name, with an ECDSA P-256 key.
func TestInternalChainVerifiesAgainstCA(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tc, err := w.dialTLS(&tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()})
	must(t, err)
	defer tc.Close()
	leaf := tc.ConnectionState().PeerCertificates[0]
	if leaf.DNSNames[0] != "edge.test" || leaf.PublicKeyAlgorithm.String() != "ECDSA" {
		t.Errorf("leaf for %v with %s key", leaf.DNSNames, leaf.PublicKeyAlgorithm)
	}
	if tc.ConnectionState().Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3 preferred", tls.VersionName(tc.ConnectionState().Version))
	}
}

// TestLargeTransfers moves 64 MiB each way in every mode and checks every byte.
func TestLargeTransfers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("64 MiB transfers")
	}
	w := newWorld(t)
	size := 64 << 20
	for _, c := range []struct {
		sni   string
		roots *x509.CertPool
	}{{"edge.test", w.internalRoots()}, {"agent.test", pool(w.agentCA)}, {"zk.test", pool(w.upstreamCA)}} {
		t.Run(c.sni, func(t *testing.T) {
			tc, err := w.dialTLS(&tls.Config{ServerName: c.sni, RootCAs: c.roots})
			must(t, err)
			defer tc.Close()
			sent := sha256.New()
			recv := sha256.New()
			errc := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.MultiWriter(tc, sent), io.LimitReader(rand.Reader, int64(size)))
				if err == nil {
					err = tc.CloseWrite()
				}
				errc <- err
			}()
			n, err := io.Copy(recv, tc)
			must(t, err)
			must(t, <-errc)
			if n != int64(size) || !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
				t.Errorf("received %d bytes (want %d); digests equal = %v", n, size, bytes.Equal(sent.Sum(nil), recv.Sum(nil)))
			}
		})
	}
}
