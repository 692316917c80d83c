package edge

import (
	"errors"
	"net"
)

// TLS alerts tlsd sends before any handshake (RFC 8446 §6): the ones crypto/tls sends for
// the same first flight, so a client learns the same from tlsd's peek as from a server.
const (
	alertUnexpectedMessage = 10
	alertRecordOverflow    = 22
	alertAccessDenied      = 49
	alertDecodeError       = 50
	alertProtocolVersion   = 70
	alertInternalError     = 80
	alertUnrecognizedName  = 112
)

// helloError is why a first flight is refused: the log's reason code, the fatal alert to
// send first (0: none, as crypto/tls sends none for bytes that are not TLS at all), and
// what happened.
type helloError struct {
	code  string
	alert byte
	msg   string
}

func (e *helloError) Error() string { return e.msg }

// Reason codes of refused first flights.
const (
	codeNotTLS         = "not_tls"         // the first bytes are not a TLS record
	codeMalformedHello = "malformed_hello" // TLS records, but no ClientHello crypto/tls would take
	codeVersion        = "version"         // an SSLv2 ClientHello
	codeClientAlert    = "client_alert"    // the client sent a fatal alert instead of a hello
	codeHelloTooLarge  = "hello_too_large" // beyond MaxClientHello
)

func malformed(alert byte, msg string) *helloError {
	return &helloError{code: codeMalformedHello, alert: alert, msg: msg}
}

// alertFor is the alert to send for a peek's error, or 0.
func alertFor(err error) byte {
	var he *helloError
	if errors.As(err, &he) {
		return he.alert
	}
	return 0
}

// sendAlert writes a fatal TLS alert record. Before any handshake, the record is in the
// clear, so this works whatever version the client wanted.
func sendAlert(c net.Conn, desc byte) {
	c.Write([]byte{21, 3, 3, 0, 2, 2, desc}) // alert, TLS 1.2 record version, length 2, fatal
}
