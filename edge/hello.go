package edge

import (
	"crypto/tls"
	"errors"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// TLS wire constants (RFC 8446) and the limits crypto/tls applies to a first flight.
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	handshakeHeaderLen  = 4
	typeClientHello     = 1
	maxRecordPayload    = 16384 + 2048 // crypto/tls's maxCiphertext
	maxHandshake        = 65536        // crypto/tls's maxHandshake

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
)

var errMalformedHello = errors.New("malformed ClientHello")

// parseClientHello reads the ClientHello at the start of b, which holds the first bytes
// of a connection. It returns the hello once b holds all of it; otherwise the number of
// bytes it needs to go on (always more than len(b)), or why b is not the start of a TLS
// connection. It accepts what crypto/tls's server accepts, and finds the same server
// name (a fuzz test holds it to that), without crypto/tls's allocations: a whole
// handshake state per peek.
func parseClientHello(b []byte) (*tls.ClientHelloInfo, int, error) {
	var msg []byte // the handshake bytes of the records read so far
	copied := false
	off := 0
	for {
		if len(b)-off < recordHeaderLen {
			return nil, off + recordHeaderLen, nil
		}
		h := b[off:]
		typ, vers, n := h[0], uint16(h[1])<<8|uint16(h[2]), int(h[3])<<8|int(h[4])
		switch {
		case typ != recordTypeHandshake || vers >= 0x1000:
			return nil, 0, errors.New("first record does not look like a TLS handshake")
		case n == 0:
			return nil, 0, errors.New("empty handshake record")
		case n > maxRecordPayload:
			return nil, 0, errors.New("oversized record")
		}
		if len(h) < recordHeaderLen+n {
			return nil, off + recordHeaderLen + n, nil
		}
		frag := h[recordHeaderLen : recordHeaderLen+n]
		off += recordHeaderLen + n
		switch {
		case msg == nil:
			msg = frag // the common case: the hello in one record, no copy
		case !copied:
			msg, copied = append(append(make([]byte, 0, len(msg)+len(frag)), msg...), frag...), true
		default:
			msg = append(msg, frag...)
		}
		if len(msg) < handshakeHeaderLen {
			continue
		}
		if msg[0] != typeClientHello {
			return nil, 0, errors.New("first handshake message is not a ClientHello")
		}
		size := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if size > maxHandshake {
			return nil, 0, errHelloTooLarge
		}
		if len(msg) >= size {
			hello, err := parseHelloMessage(msg[handshakeHeaderLen:size])
			return hello, 0, err
		}
	}
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
		return nil, errMalformedHello
	}
	hello := &tls.ClientHelloInfo{}
	if !s.Empty() {
		var exts cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
			return nil, errMalformedHello
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
			return errMalformedHello
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
			return errMalformedHello
		}
	}
	return nil
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
