package badhello

import (
	"bytes"
	"encoding/binary"
)

// Extension types the cases break.
const (
	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
	extKeyShare          = 51
)

// Corpus is every case built from base, a one-record ClientHello with server_name and
// ALPN (GoHello with NextProtos set).
func Corpus(base []byte) ([]Case, error) {
	h, err := Parse(base)
	if err != nil {
		return nil, err
	}
	body := h.Body()
	var cases []Case
	for _, group := range [][]Case{served(base), truncated(base, body), lengths(h, body), names(h), alpn(h), records(base, body), notHellos()} {
		cases = append(cases, group...)
	}
	return cases, nil
}

// served are odd but legal first flights.
func served(base []byte) []Case {
	warning := Record(21, []byte{1, 90}) // user_canceled, a warning
	return []Case{
		{"as sent", base, Served},
		{"one byte per record", fragment(base, 1), Served},
		{"a warning alert first", append(warning, base...), Served},
	}
}

// truncated cut the hello short: a message whose lengths run past its end is a
// decode_error; bytes that simply stop (the client closes) get no alert.
func truncated(base, body []byte) []Case {
	return []Case{
		{"body cut by a byte", Flight(body[:len(body)-1]), DecodeError},
		{"body cut in the random", Flight(body[:20]), DecodeError},
		{"empty body", Flight(nil), DecodeError},
		{"record cut then closed", base[:len(base)/2], None},
		{"header only then closed", base[:5], None},
		{"handshake header says more than sent", Record(22, Handshake(1, body)[:len(body)]), None},
	}
}

// lengths are the hello's own length fields lying.
func lengths(h *Hello, body []byte) []Case {
	suitesAt := 2 + 32 + 1 + len(h.SessionID)
	extsAt := suitesAt + 2 + len(h.Suites) + 1 + len(h.CM)
	return []Case{
		{"session id length past the end", Flight(patch(body, 34, 0xff)), DecodeError},
		{"odd cipher suites length", Flight(patch16(body, suitesAt, uint16(len(h.Suites)+1))), DecodeError},
		{"cipher suites length past the end", Flight(patch16(body, suitesAt, 0xfffe)), DecodeError},
		{"extensions length one too long", Flight(patch16(body, extsAt, uint16(len(body)-extsAt-2+1))), DecodeError},
		{"extensions length one too short", Flight(patch16(body, extsAt, uint16(len(body)-extsAt-2-1))), DecodeError},
		{"extension data past the end", Flight(append(body[:len(body):len(body)], 0xfe, 0x00, 0x00, 0x10)), DecodeError},
		{"trailing byte after the extensions", Flight(append(body[:len(body):len(body)], 0)), DecodeError},
		{"supported_versions empty", Flight(h.With(extSupportedVersions, []byte{0}).Body()), DecodeError},
		{"supported_versions odd", Flight(h.With(extSupportedVersions, []byte{3, 3, 4, 3}).Body()), DecodeError},
		{"key_share length lies", Flight(h.With(extKeyShare, []byte{0, 40, 0, 29, 0, 32}).Body()), DecodeError},
	}
}

// names are broken server_name extensions (RFC 6066 §3).
func names(h *Hello) []Case {
	sni := func(list []byte) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(list))) }
	name := func(typ byte, n string) []byte {
		return append(append([]byte{typ}, byte(len(n)>>8), byte(len(n))), n...)
	}
	one := name(0, "zk.test")
	return []Case{
		{"server_name list length lies", Flight(h.With(extServerName, append([]byte{0, byte(len(one) + 3)}, one...)).Body()), DecodeError},
		{"server_name length past the end", Flight(h.With(extServerName, append(sni(one), 0, 0, 40, 'z', 'k')).Body()), DecodeError},
		{"server_name empty list", Flight(h.With(extServerName, []byte{0, 0}).Body()), DecodeError},
		{"server_name empty name", Flight(h.With(extServerName, append(sni(name(0, "")), name(0, "")...)).Body()), DecodeError},
		{"server_name trailing dot", Flight(h.With(extServerName, append(sni(name(0, "zk.test.")), name(0, "zk.test.")...)).Body()), DecodeError},
		{"server_name twice in the list", Flight(h.With(extServerName, append(sni(append(one, one...)), append(one, one...)...)).Body()), DecodeError},
		{"server_name extension twice", Flight(append(h.Body()[:0:0], dupExt(h, extServerName)...)), DecodeError},
	}
}

// alpn are broken ALPN extensions (RFC 7301 §3.1).
func alpn(h *Hello) []Case {
	list := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
	return []Case{
		{"ALPN empty list", Flight(h.With(extALPN, []byte{0, 0}).Body()), DecodeError},
		{"ALPN empty protocol", Flight(h.With(extALPN, list([]byte{2, 'h', '2', 0})).Body()), DecodeError},
		{"ALPN list length lies", Flight(h.With(extALPN, []byte{0, 9, 2, 'h', '2'}).Body()), DecodeError},
		{"ALPN protocol length past the list", Flight(h.With(extALPN, list([]byte{9, 'h', '2'})).Body()), DecodeError},
		{"ALPN without a list", Flight(h.With(extALPN, nil).Body()), DecodeError},
	}
}

// records are the record layer broken around a good hello.
func records(base, body []byte) []Case {
	hs := Handshake(1, body)
	huge := Handshake(1, make([]byte, 70_000))[:100]
	return []Case{
		{"record over the ciphertext bound", append([]byte{22, 3, 1, 0x48, 0x01}, make([]byte, 64)...), RecordOverflow},
		{"record over the plaintext bound", Record(22, append(bytes.Clone(hs), make([]byte, 16385-len(hs))...)), RecordOverflow},
		{"handshake message over 64 KiB", Record(22, huge), InternalError},
		{"empty handshake record", append(Record(22, nil), base...), UnexpectedMessage},
		{"alert record of 3 bytes", Record(21, []byte{1, 0, 0}), UnexpectedMessage},
		{"alert of level 3", Record(21, []byte{3, 40}), UnexpectedMessage},
		{"fatal alert instead of a hello", Record(21, []byte{2, 40}), None},
		{"close_notify instead of a hello", Record(21, []byte{1, 0}), None},
		{"17 warning alerts", append(bytes.Repeat(Record(21, []byte{1, 90}), 17), base...), UnexpectedMessage},
		{"application data after a fragment", append(Record(22, hs[:10]), Record(23, hs[10:])...), None},
		{"record version 16.0 after a fragment", append(Record(22, hs[:10]), 22, 0x10, 0, 0, 1, 0), None},
	}
}

// notHellos are first flights that are not a ClientHello at all.
func notHellos() []Case {
	return []Case{
		{"unknown handshake type", Record(22, Handshake(99, []byte{1, 2, 3})), UnexpectedMessage},
		{"finished first", Record(22, Handshake(20, make([]byte, 12))), UnexpectedMessage},
		{"SSLv2 ClientHello", []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, ProtocolVersion},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: zk.test\r\n\r\n"), None},
		{"nothing", nil, None},
	}
}

// fragment splits a one-record flight into records of at most size bytes of payload.
func fragment(rec []byte, size int) []byte {
	var out []byte
	for p := rec[5:]; len(p) > 0; {
		n := min(size, len(p))
		out = append(out, Record(rec[0], p[:n])...)
		p = p[n:]
	}
	return out
}

func patch(b []byte, at int, v byte) []byte {
	out := bytes.Clone(b)
	out[at] = v
	return out
}

func patch16(b []byte, at int, v uint16) []byte {
	out := bytes.Clone(b)
	binary.BigEndian.PutUint16(out[at:], v)
	return out
}

// dupExt is h's body with extension typ written twice.
func dupExt(h *Hello, typ uint16) []byte {
	c := *h
	for _, e := range h.Exts {
		if e.Type == typ {
			c.Exts = append(append([]Ext(nil), h.Exts...), e)
		}
	}
	return c.Body()
}
