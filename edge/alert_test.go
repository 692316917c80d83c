package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/tlsd/tlsd/internal/badhello"
)

// writeConn is bytesConn that keeps what the server writes.
type writeConn struct {
	bytesConn
	out bytes.Buffer
}

func (c *writeConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// cryptoTLSAnswer is what crypto/tls's server answers to data: badhello.Served when it
// parsed a ClientHello, the alert it sent, or badhello.None.
func cryptoTLSAnswer(data []byte) int {
	stop := errors.New("stop")
	served := false
	cfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { served = true; return nil, stop }}
	c := &writeConn{bytesConn: bytesConn{r: bytes.NewReader(data)}}
	tls.Server(c, cfg).Handshake()
	return answer(served, c.out.Bytes())
}

// answer reads a server's first written record: Served, its alert, or None.
func answer(served bool, out []byte) int {
	switch {
	case served:
		return badhello.Served
	case len(out) >= 7 && out[0] == 21:
		return int(out[6])
	}
	return badhello.None
}

// peekAnswer is what tlsd's peek answers to data, in the same terms.
func peekAnswer(data []byte) (int, error) {
	hello, _, err := PeekClientHello(&bytesConn{r: bytes.NewReader(data)})
	if hello != nil {
		return badhello.Served, nil
	}
	if a := alertFor(err); a != 0 {
		return int(a), err
	}
	return badhello.None, err
}

// otherMessage: crypto/tls parses a first message of another known type before it
// finds it is not a ClientHello, so it may say decode_error where tlsd, which does not
// parse it, says unexpected_message. Both are fatal; the client is no TLS client.
func otherMessage(peek, ref int, err error) bool {
	return peek == alertUnexpectedMessage && ref == alertDecodeError && strings.Contains(err.Error(), "not a ClientHello")
}

// TestPeekAnswersAsCryptoTLS: on every malformed-hello case, tlsd's peek refuses with the
// alert crypto/tls sends (or, for hellos it does not look into, lets the upstream answer).
func TestPeekAnswersAsCryptoTLS(t *testing.T) {
	base, err := badhello.GoHello(&tls.Config{ServerName: "zk.test", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	cases, err := badhello.Corpus(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			ref := cryptoTLSAnswer(c.Data)
			if ref != c.Want {
				t.Fatalf("crypto/tls answers %d, the case expects %d", ref, c.Want)
			}
			got, err := peekAnswer(c.Data)
			if got == badhello.Served && ref != badhello.Served {
				t.Logf("the peek takes it; the upstream answers %d", ref)
				return // a defect the peek does not look into: the upstream's TLS answers it
			}
			if got != ref && !otherMessage(got, ref, err) {
				t.Errorf("peek answers %d (%v), crypto/tls %d", got, err, ref)
			}
		})
	}
}
