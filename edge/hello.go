package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// TLS wire constants (RFC 8446) and the limits crypto/tls applies to a first flight.
const (
	recordHeaderLen     = 5
	recordTypeAlert     = 21
	recordTypeHandshake = 22
	recordTypeSSLv2     = 0x80 // the first byte of an SSLv2 ClientHello
	handshakeHeaderLen  = 4
	typeClientHello     = 1
	maxPlaintext        = 16384        // crypto/tls's maxPlaintext
	maxRecordPayload    = 16384 + 2048 // crypto/tls's maxCiphertext
	maxHandshake        = 65536        // crypto/tls's maxHandshake
	maxUselessRecords   = 16           // crypto/tls's bound on warning alerts it skips

	alertLevelWarning = 1
	alertLevelFatal   = 2
	alertCloseNotify  = 0

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
)

// parseClientHello reads the ClientHello at the start of b, which holds the first bytes
// of a connection. It returns the hello once b holds all of it; otherwise the number of
// bytes it needs to go on (always more than len(b)), or a *helloError saying why b is
// not a first flight crypto/tls would take and which alert crypto/tls sends for it. It
// accepts what crypto/tls's server accepts, finds the same server name and refuses with
// the same alert (a differential fuzz test holds it to that), without crypto/tls's
// allocations: a whole handshake state per peek.
func parseClientHello(b []byte) (*tls.ClientHelloInfo, int, error) {
	var f flight
	for off := 0; ; {
		if len(b)-off < recordHeaderLen {
			return nil, off + recordHeaderLen, nil
		}
		typ, n, err := recordHeader(b[off:], off == 0)
		if err != nil {
			return nil, 0, err
		}
		if len(b)-off < recordHeaderLen+n {
			return nil, off + recordHeaderLen + n, nil
		}
		frag := b[off+recordHeaderLen : off+recordHeaderLen+n]
		off += recordHeaderLen + n
		if hello, done, err := f.add(typ, frag); done || err != nil {
			return hello, 0, err
		}
	}
}

// recordHeader checks a record's header as crypto/tls does before it has a version:
// only handshake and alert records, no version from 16.0 up, no payload over the
// ciphertext bound. It returns the type and the payload's length.
func recordHeader(h []byte, first bool) (typ byte, n int, err error) {
	typ, vers, n := h[0], uint16(h[1])<<8|uint16(h[2]), int(h[3])<<8|int(h[4])
	switch {
	case typ == recordTypeSSLv2:
		return 0, 0, &helloError{code: codeVersion, alert: alertProtocolVersion, msg: "an SSLv2 ClientHello: tlsd speaks TLS 1.2 and 1.3"}
	case (typ != recordTypeHandshake && typ != recordTypeAlert) || vers >= 0x1000:
		if first {
			return 0, 0, &helloError{code: codeNotTLS, msg: "client did not start with a TLS record"}
		}
		return 0, 0, &helloError{code: codeMalformedHello, msg: "a record of the ClientHello does not look like TLS"}
	case n > maxRecordPayload:
		return 0, 0, malformed(alertRecordOverflow, fmt.Sprintf("oversized record of %d bytes", n))
	}
	return typ, n, nil
}

// flight gathers the handshake bytes of the records read so far.
type flight struct {
	msg     []byte // the handshake bytes of the records read so far
	copied  bool   // msg is a copy (the hello spans records), not a slice of the input
	useless int    // warning alerts skipped since the last handshake bytes
}

// add takes one record's payload. It reports the hello once it is whole (done), or why
// the flight is refused.
func (f *flight) add(typ byte, frag []byte) (*tls.ClientHelloInfo, bool, error) {
	if len(frag) > maxPlaintext {
		return nil, false, malformed(alertRecordOverflow, fmt.Sprintf("record of %d bytes, over the %d a plaintext record may hold", len(frag), maxPlaintext))
	}
	if typ == recordTypeAlert {
		return nil, false, f.alert(frag)
	}
	if len(frag) == 0 {
		return nil, false, malformed(alertUnexpectedMessage, "empty handshake record")
	}
	f.useless = 0
	f.append(frag)
	if len(f.msg) < handshakeHeaderLen {
		return nil, false, nil
	}
	body := int(f.msg[1])<<16 | int(f.msg[2])<<8 | int(f.msg[3])
	if body > maxHandshake {
		return nil, false, malformed(alertInternalError, fmt.Sprintf("handshake message of %d bytes, over the %d crypto/tls takes", body, maxHandshake))
	}
	if len(f.msg) < handshakeHeaderLen+body {
		return nil, false, nil
	}
	if f.msg[0] != typeClientHello {
		return nil, false, malformed(alertUnexpectedMessage, fmt.Sprintf("first handshake message is of type %d, not a ClientHello", f.msg[0]))
	}
	hello, err := parseHelloMessage(f.msg[handshakeHeaderLen : handshakeHeaderLen+body])
	if err != nil {
		return nil, false, malformed(alertDecodeError, err.Error())
	}
	return hello, true, nil
}

// append adds a record's handshake bytes; the common case, the hello in one record,
// copies nothing.
func (f *flight) append(frag []byte) {
	switch {
	case f.msg == nil:
		f.msg = frag
	case !f.copied:
		f.msg, f.copied = append(append(make([]byte, 0, len(f.msg)+len(frag)), f.msg...), frag...), true
	default:
		f.msg = append(f.msg, frag...)
	}
}

// alert is an alert record among the hello's, taken as crypto/tls takes it: a warning is
// skipped (up to its bound), close_notify and fatal alerts end the connection without a
// word back, anything else is an unexpected message.
func (f *flight) alert(frag []byte) error {
	switch {
	case len(frag) != 2:
		return malformed(alertUnexpectedMessage, fmt.Sprintf("alert record of %d bytes", len(frag)))
	case frag[1] == alertCloseNotify:
		return &helloError{code: "client_closed", msg: "client sent close_notify before its ClientHello"}
	case frag[0] == alertLevelWarning:
		if f.useless++; f.useless > maxUselessRecords {
			return malformed(alertUnexpectedMessage, "too many warning alerts before the ClientHello")
		}
		return nil
	case frag[0] == alertLevelFatal:
		return &helloError{code: codeClientAlert, msg: fmt.Sprintf("client sent fatal alert %d instead of a ClientHello", frag[1])}
	}
	return malformed(alertUnexpectedMessage, fmt.Sprintf("alert of unknown level %d", frag[0]))
}

// parseHelloMessage parses a ClientHello's body as crypto/tls's clientHelloMsg.unmarshal
// does, keeping what routing and error messages use.
func parseHelloMessage(body []byte) (*tls.ClientHelloInfo, error) {
	s := cryptobyte.String(body)
	var vers uint16
	var sessionID, suites, compression cryptobyte.String
	if !s.ReadUint16(&vers) || !s.Skip(32) || !s.ReadUint8LengthPrefixed(&sessionID) ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return nil, errors.New("malformed ClientHello: its session id, cipher suites or compression methods run past the message")
	}
	hello := &tls.ClientHelloInfo{}
	if !s.Empty() {
		var exts cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
			return nil, errors.New("malformed ClientHello: its extensions do not fill the message exactly")
		}
		if err := parseExtensions(exts, hello); err != nil {
			return nil, err
		}
	}
	if len(hello.SupportedVersions) == 0 {
		hello.SupportedVersions = versionsUpTo(vers)
	}
	return hello, nil
}

func parseExtensions(exts cryptobyte.String, hello *tls.ClientHelloInfo) error {
	var seen extensionSet
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return errors.New("malformed ClientHello: an extension runs past the extensions")
		}
		if !seen.add(typ) {
			// Two server names could route one way and be served another.
			return errors.New("duplicate extension in ClientHello")
		}
		var ok bool
		switch typ {
		case extServerName:
			hello.ServerName, ok = parseServerName(data)
		case extALPN:
			hello.SupportedProtos, ok = parseALPN(data)
		case extSupportedVersions:
			hello.SupportedVersions, ok = parseVersions(data)
		default:
			ok = true
		}
		if !ok {
			return fmt.Errorf("malformed %s extension in ClientHello", extensionName(typ))
		}
	}
	return nil
}

func extensionName(typ uint16) string {
	switch typ {
	case extServerName:
		return "server_name"
	case extALPN:
		return "ALPN"
	}
	return "supported_versions"
}

// parseServerName follows RFC 6066 §3 as crypto/tls does: one host_name at most, other
// name types skipped, no trailing dot.
func parseServerName(data cryptobyte.String) (string, bool) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
		return "", false
	}
	name := ""
	for !list.Empty() {
		var nameType uint8
		var n cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&n) || n.Empty() {
			return "", false
		}
		if nameType != 0 {
			continue
		}
		if name != "" {
			return "", false
		}
		name = string(n)
		if strings.HasSuffix(name, ".") {
			return "", false
		}
	}
	return name, true
}

func parseALPN(data cryptobyte.String) ([]string, bool) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
		return nil, false
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&p) || p.Empty() {
			return nil, false
		}
		protos = append(protos, string(p))
	}
	return protos, true
}

func parseVersions(data cryptobyte.String) ([]uint16, bool) {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || list.Empty() {
		return nil, false
	}
	versions := make([]uint16, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		if !list.ReadUint16(&v) {
			return nil, false
		}
		versions = append(versions, v)
	}
	return versions, true
}

// versionsUpTo lists what a client without supported_versions offers: its
// legacy_version and the versions below it, as crypto/tls reports them.
func versionsUpTo(max uint16) []uint16 {
	var out []uint16
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12, tls.VersionTLS11, tls.VersionTLS10} {
		if v <= max {
			out = append(out, v)
		}
	}
	return out
}

// extensionSet remembers extension types without allocating for the usual few dozen.
type extensionSet struct {
	few  [32]uint16
	n    int
	many map[uint16]bool
}

// add records typ and reports whether it was new.
func (s *extensionSet) add(typ uint16) bool {
	if s.many != nil {
		if s.many[typ] {
			return false
		}
		s.many[typ] = true
		return true
	}
	for _, t := range s.few[:s.n] {
		if t == typ {
			return false
		}
	}
	if s.n < len(s.few) {
		s.few[s.n] = typ
		s.n++
		return true
	}
	s.many = make(map[uint16]bool, 2*len(s.few))
	for _, t := range s.few {
		s.many[t] = true
	}
	s.many[typ] = true
	return true
}
