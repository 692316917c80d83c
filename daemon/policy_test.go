package daemon

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tlsd/tlsd/internal/testpki"
)

// headerUpstream is a loopback upstream that expects PROXY headers (see headersOn).
func headerUpstream(t *testing.T) (string, chan *proxyproto.Header) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	return ln.Addr().String(), headersOn(t, ln)
}

// headersOn accepts on ln, decodes the PROXY header each connection starts with, hands
// it over, and echoes the rest.
func headersOn(t *testing.T, ln net.Listener) chan *proxyproto.Header {
	headers := make(chan *proxyproto.Header, 16)
	acceptEach(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := proxyproto.Read(br)
		if err != nil {
			c.Close()
			return
		}
		headers <- h
		c.SetReadDeadline(time.Time{})
		io.Copy(c, br)
		c.(interface{ CloseWrite() error }).CloseWrite()
	})
	return headers
}

// logged is s as the text log handler writes it inside a quoted value.
func logged(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] }

// received is what an upstream learned from a PROXY v2 header's TLVs.
type received struct {
	authority, alpn, version, cn string
	ssl, certConn, verified      bool
}

func decodeTLVs(t *testing.T, h *proxyproto.Header) received {
	t.Helper()
	tlvs, err := h.TLVs()
	must(t, err)
	var r received
	for _, tlv := range tlvs {
		switch tlv.Type {
		case proxyproto.PP2_TYPE_AUTHORITY:
			r.authority = string(tlv.Value)
		case proxyproto.PP2_TYPE_ALPN:
			r.alpn = string(tlv.Value)
		}
	}
	s, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		return r
	}
	r.ssl, r.certConn, r.verified = s.ClientSSL(), s.ClientCertConn(), s.Verified()
	r.version, _ = s.SSLVersion()
	r.cn, _ = s.ClientCN()
	return r
}

// TestMutualTLSPolicy: each verification strategy against no certificate, one from
// another CA, and verified ones whose CN, DNS name, URI, email or OU do and do not
// match the allow rules, at the edge and at the agent; the upstream learns the outcome
// from the PROXY v2 TLVs.
func TestMutualTLSPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up, headers := headerUpstream(t)
	e.leaf(e.agentCA, "agent", "agent.test")
	allow := "    allow:\n      common_names: [billing-client]\n      dns_names: [\"*.svc.example.com\"]\n" +
		"      uris: [\"spiffe://example.com/ns/prod/sa/billing\"]\n      email_addresses: [ops@example.com]\n      organizational_units: [payments]\n"
	cas := "  mutual_tls:\n    certificate_authorities: [clients-ca.crt]\n"
	e.start(yamlEndpoint("strict", "strict.test", up, "edge", "  issuer: internal\n"+cas+allow) + "upstream_proxy_protocol: v2\n" +
		yamlEndpoint("any", "any.test", up, "edge", "  issuer: internal\n  mutual_tls:\n    verification_strategy: require-any\n") + "upstream_proxy_protocol: v2\n" +
		yamlEndpoint("request", "request.test", up, "edge", "  issuer: internal\n"+cas+"    verification_strategy: request\n") + "upstream_proxy_protocol: v2\n" +
		yamlEndpoint("agent", "agent.test", up, "agent", "  certificate: {crt: agent.crt, key: agent.key}\n"+cas+
			"    allow:\n      uris: [\"spiffe://example.com/ns/prod/sa/billing\"]\n") + "upstream_proxy_protocol: v2\n")
	client := func(o testpki.Options) []tls.Certificate {
		if o.CommonName == "" {
			return nil
		}
		return []tls.Certificate{clientCert(t, e.clientCA, o)}
	}
	other := []tls.Certificate{clientCert(t, e.agentCA, testpki.Options{CommonName: "billing-client"})}
	spiffe := testpki.Options{CommonName: "workload", URIs: []string{"spiffe://example.com/ns/prod/sa/billing"}}
	cases := []struct {
		name, sni string
		certs     []tls.Certificate
		refusal   string // "" when admitted
		want      received
	}{
		{"strict/none", "strict.test", nil, "client sent no certificate", received{}},
		{"strict/other CA", "strict.test", other, "signed by unknown authority", received{}},
		{"strict/CN", "strict.test", client(testpki.Options{CommonName: "billing-client"}), "", received{cn: "billing-client", certConn: true, verified: true}},
		{"strict/DNS", "strict.test", client(testpki.Options{CommonName: "w", DNSNames: []string{"pay.svc.example.com"}}), "", received{cn: "w", certConn: true, verified: true}},
		{"strict/DNS two labels", "strict.test", client(testpki.Options{CommonName: "w", DNSNames: []string{"a.pay.svc.example.com"}}),
			`matches none of allow common_names ["billing-client"], dns_names ["*.svc.example.com"]`, received{}},
		{"strict/URI", "strict.test", client(spiffe), "", received{cn: "workload", certConn: true, verified: true}},
		{"strict/URI of dev", "strict.test", client(testpki.Options{CommonName: "w", URIs: []string{"spiffe://example.com/ns/dev/sa/billing"}}),
			`URI="spiffe://example.com/ns/dev/sa/billing" matches none`, received{}},
		{"strict/email", "strict.test", client(testpki.Options{CommonName: "w", Emails: []string{"ops@example.com"}}), "", received{cn: "w", certConn: true, verified: true}},
		{"strict/OU", "strict.test", client(testpki.Options{CommonName: "w", OUs: []string{"payments"}}), "", received{cn: "w", certConn: true, verified: true}},
		{"strict/CN with a newline", "strict.test", client(testpki.Options{CommonName: "mallory\nlevel=ERROR"}), `CN="mallory\nlevel=ERROR"`, received{}},
		{"any/none", "any.test", nil, "client sent no certificate", received{}},
		{"any/other CA", "any.test", other, "", received{certConn: true}},
		{"request/none", "request.test", nil, "", received{}},
		{"request/other CA", "request.test", other, "signed by unknown authority", received{}},
		{"request/verified", "request.test", client(testpki.Options{CommonName: "anyone"}), "", received{cn: "anyone", certConn: true, verified: true}},
		{"agent/URI", "agent.test", client(spiffe), "", received{cn: "workload", certConn: true, verified: true}},
		{"agent/CN only", "agent.test", client(testpki.Options{CommonName: "billing-client"}), `allow uris ["spiffe://example.com/ns/prod/sa/billing"]`, received{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roots := e.internalRoots()
			if c.sni == "agent.test" {
				roots = pool(e.agentCA)
			}
			cfg := &tls.Config{ServerName: c.sni, RootCAs: roots, MaxVersion: tls.VersionTLS13}
			if c.certs != nil {
				// Sent whatever CAs tlsd names: crypto/tls would withhold one of another CA.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c.certs[0], nil }
			}
			err := handshakeAndRead(e, cfg)
			if c.refusal != "" {
				if err == nil {
					t.Fatal("admitted; want refused")
				}
				e.log.waitFor(t, "connection failed", "sni="+c.sni, logged(c.refusal))
				return
			}
			must(t, err)
			got := decodeTLVs(t, <-headers)
			c.want.authority, c.want.ssl, c.want.version = c.sni, true, "TLSv1.3"
			if got != c.want {
				t.Errorf("the upstream learned %+v, want %+v", got, c.want)
			}
		})
	}
}

// sendProxyHeader dials tlsd from the loopback address from and writes raw first.
func sendProxyHeader(t *testing.T, e *env, from string, raw []byte) net.Conn {
	t.Helper()
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP(from)}, e.d.Addr("").(*net.TCPAddr))
	must(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write(raw)
	must(t, err)
	return c
}

func proxyV2(t *testing.T, src string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("203.0.113.1"), Port: 443})
	b, err := h.Format()
	must(t, err)
	return b
}

// TestProxyProtocolFrom: behind a load balancer (--proxy-protocol-from 127.0.0.1), the
// address of its PROXY header (v1 or v2) is the client's for ip_restriction, the log and
// the header tlsd sends upstream; a missing or malformed header from it is refused, and
// so is a header from a source it does not trust (127.0.0.2).
func TestProxyProtocolFrom(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up, headers := headerUpstream(t)
	e.start(yamlEndpoint("billing", "billing.test", up, "edge", "  issuer: internal\n")+
		"upstream_proxy_protocol: v2\nip_restriction:\n  allow_cidrs: [192.0.2.7, 127.0.0.2]\n",
		func(o *Options) { o.ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	local, err := proxyproto.HeaderProxyFromAddrs(2, nil, nil).Format() // a LOCAL command: the balancer's own check
	must(t, err)
	cases := []struct {
		name, from string
		header     []byte
		refusal    string // "" when served
	}{
		{"v2 of an allowed client", "127.0.0.1", proxyV2(t, "192.0.2.7"), ""},
		{"v1 of an allowed client", "127.0.0.1", []byte("PROXY TCP4 192.0.2.7 203.0.113.1 40000 443\r\n"), ""},
		{"v2 of a refused client", "127.0.0.1", proxyV2(t, "192.0.2.8"), "client address 192.0.2.8 is allowed by no endpoint of this listener"},
		{"LOCAL: the balancer itself", "127.0.0.1", local, "client address 127.0.0.1 is allowed by no endpoint"},
		{"no header from the balancer", "127.0.0.1", nil, "did not begin with a PROXY protocol header"},
		{"a malformed header", "127.0.0.1", []byte("PROXY TCP4 192.0.2.7 nonsense\r\n"), "PROXY protocol header from 127.0.0.1 refused"},
		{"a header from an untrusted source", "127.0.0.2", proxyV2(t, "192.0.2.7"), "127.0.0.2 sent a PROXY protocol header but is not a --proxy-protocol-from source"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := sendProxyHeader(t, e, c.from, c.header)
			tc := tls.Client(raw, &tls.Config{ServerName: "billing.test", RootCAs: e.internalRoots()})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := roundTrip(tc, []byte("hello"))
			if c.refusal != "" {
				if err == nil {
					t.Fatalf("served %q; want refused", got)
				}
				e.log.waitFor(t, "connection failed", logged(c.refusal))
				return
			}
			if err != nil || string(got) != "hello" {
				t.Fatalf("echo %q, %v", got, err)
			}
			if h := <-headers; h.SourceAddr.String() != "192.0.2.7:40000" || h.DestinationAddr.String() != "203.0.113.1:443" {
				t.Errorf("the upstream was told %s -> %s, want the balancer's client 192.0.2.7:40000 -> 203.0.113.1:443", h.SourceAddr, h.DestinationAddr)
			}
			e.log.waitFor(t, "connection closed", "client=192.0.2.7:40000")
		})
	}
}

// TestVersionsAndALPN: max_version "1.2" gives a TLS 1.3 client TLS 1.2 (seen by
// openssl s_client), ALPN h2 is negotiated for curl --http2 through to an HTTP/2
// upstream and logged, a client offering only protocols the endpoint lacks is refused,
// and the upstream gets the SNI and ALPN in PROXY v2 TLVs.
func TestVersionsAndALPN(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (apt-get install %s)", tool, tool)
		}
	}
	e := newEnv(t)
	h2c := newH2CServer(t)
	up, headers := headerUpstream(t)
	e.start(yamlEndpoint("legacy", "legacy.test", up, "edge", "  issuer: internal\n  max_version: \"1.2\"\n") +
		yamlEndpoint("web", "web.test", h2c, "edge", "  issuer: internal\n  alpn: [h2, http/1.1]\n") +
		yamlEndpoint("grpc", "grpc.test", up, "edge", "  issuer: internal\n  alpn: [h2]\n") + "upstream_proxy_protocol: v2\n")
	ca, err := e.internalCAFile()
	must(t, err)
	t.Run("openssl gets TLS 1.2 from max_version", func(t *testing.T) {
		out, err := exec.Command("openssl", "s_client", "-connect", e.addr(), "-servername", "legacy.test", "-CAfile", ca,
			"-verify_return_error", "-brief").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Protocol version: TLSv1.2") {
			t.Errorf("openssl s_client: %v\n%s", err, out)
		}
		tc, err := e.dialTLS(&tls.Config{ServerName: "legacy.test", RootCAs: e.internalRoots(), MinVersion: tls.VersionTLS13})
		if err == nil {
			tc.Close()
			t.Fatal("a TLS 1.3-only client was served by a max_version 1.2 endpoint")
		}
		e.log.waitFor(t, "connection failed", "sni=legacy.test", "endpoint requires TLS 1.2 exactly")
	})
	t.Run("curl --http2 negotiates h2", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(e.addr())
		out, err := exec.Command("curl", "-sS", "--http2", "--max-time", "5", "--cacert", ca,
			"--resolve", "web.test:"+port+":127.0.0.1", "https://web.test:"+port+"/proto").CombinedOutput()
		if err != nil || string(out) != "HTTP/2.0" {
			t.Errorf("curl: %v\n%s", err, out)
		}
		e.log.waitFor(t, "connection closed", "sni=web.test", "alpn=h2")
	})
	t.Run("openssl -alpn and the upstream's TLVs", func(t *testing.T) {
		cmd := exec.Command("openssl", "s_client", "-connect", e.addr(), "-servername", "grpc.test", "-CAfile", ca, "-alpn", "h2,http/1.1")
		cmd.Stdin = strings.NewReader("ping")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ALPN protocol: h2") {
			t.Errorf("openssl s_client -alpn: %v\n%s", err, out)
		}
		got := decodeTLVs(t, <-headers)
		if want := (received{authority: "grpc.test", alpn: "h2", ssl: true, version: "TLSv1.3"}); got != want {
			t.Errorf("the upstream learned %+v, want %+v", got, want)
		}
	})
	t.Run("a client offering none of the endpoint's protocols", func(t *testing.T) {
		_, err := e.dialTLS(&tls.Config{ServerName: "grpc.test", RootCAs: e.internalRoots(), NextProtos: []string{"spdy/3", "imap"}})
		if err == nil || !strings.Contains(err.Error(), "no application protocol") {
			t.Fatalf("handshake: %v, want the no_application_protocol alert", err)
		}
		e.log.waitFor(t, "connection failed", "sni=grpc.test", logged(`client offered ALPN ["spdy/3" "imap"], endpoint offers ["h2"]`))
	})
}

// newH2CServer serves HTTP/2 without TLS (prior knowledge), as an upstream behind an
// edge that negotiated h2, and answers with the protocol it saw.
func newH2CServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestSplitTellsTheUpstreamTheEdgesTLS: where the edge terminates and an agent dials the
// upstream, the tunnel carries the handshake's outcome, so the agent's PROXY v2 header
// says what the edge negotiated and verified.
func TestSplitTellsTheUpstreamTheEdgesTLS(t *testing.T) {
	t.Parallel()
	up, headers := headerUpstream(t)
	s := startSplit(t, yamlEndpoint("ed", "ed.test", up, "edge", "  issuer: internal\n  alpn: [h2]\n  mutual_tls:\n    certificate_authorities: [clients-ca.crt]\n")+
		"agent: api-agent\nupstream_proxy_protocol: v2\n", nil)
	cert := clientCert(t, s.clientCA, testpki.Options{CommonName: "billing-client"})
	tc, err := s.dialTLS(&tls.Config{ServerName: "ed.test", RootCAs: s.internalRoots(), NextProtos: []string{"h2"}, Certificates: []tls.Certificate{cert}})
	must(t, err)
	defer tc.Close()
	if got, err := roundTrip(tc, []byte("through the tunnel")); err != nil || string(got) != "through the tunnel" {
		t.Fatalf("echo %q, %v", got, err)
	}
	h := <-headers
	want := received{authority: "ed.test", alpn: "h2", version: "TLSv1.3", cn: "billing-client", ssl: true, certConn: true, verified: true}
	if got := decodeTLVs(t, h); got != want {
		t.Errorf("the upstream learned %+v, want %+v", got, want)
	}
	if h.SourceAddr.String() != tc.LocalAddr().String() {
		t.Errorf("the upstream was told the client is %s; it is %s", h.SourceAddr, tc.LocalAddr())
	}
}
