package daemon

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/badhello"
)

// answerOf sends data as a client's first flight to addr, half-closes, and reads the
// server's answer: badhello.Served for a handshake record (a ServerHello), the alert of an
// alert record, or badhello.None when the server closed without a word.
func answerOf(t *testing.T, addr string, data []byte) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("writing the flight: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil && len(got) == 0 {
		t.Logf("reading the answer: %v", err)
	}
	switch {
	case len(got) >= 5 && got[0] == 22:
		return badhello.Served
	case len(got) >= 7 && got[0] == 21:
		return int(got[6])
	}
	return badhello.None
}

// TestMalformedHellosGetCryptoTLSAlerts sends the malformed-hello corpus (truncated,
// lying lengths, broken server_name and ALPN, oversized records and messages, alerts,
// SSLv2, HTTP) to a zero-knowledge endpoint of tlsd and to its crypto/tls upstream
// directly, over real sockets: the client gets the same answer from both.
func TestMalformedHellosGetCryptoTLSAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", ""))
	base, err := badhello.GoHello(&tls.Config{ServerName: "zk.test", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	must(t, err)
	cases, err := badhello.Corpus(base)
	must(t, err)
	for _, c := range cases {
		direct, via := answerOf(t, zk.addr(), c.Data), answerOf(t, e.addr(), c.Data)
		if direct != c.Want {
			t.Errorf("%s: crypto/tls answers %d, the case expects %d", c.Name, direct, c.Want)
		}
		if via != direct {
			t.Errorf("%s: through tlsd %d, crypto/tls %d", c.Name, via, direct)
		}
	}
	e.log.waitFor(t, "connection failed", "reason_code=malformed_hello", "ALPN")
	e.log.waitFor(t, "connection failed", "reason_code=not_tls")
	e.log.waitFor(t, "connection failed", "reason_code=client_alert")
}
