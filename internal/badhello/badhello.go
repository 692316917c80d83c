// Package badhello builds first flights that a TLS server must refuse, and a few odd ones
// it must take, from a real ClientHello: truncated messages, lengths that lie, malformed
// server_name and ALPN lists, oversized records and handshake messages, alerts in place
// of a hello, SSLv2 and plain text. Each case names the alert crypto/tls answers with, so
// tests can hold tlsd's answers to crypto/tls's on the same bytes.
package badhello

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Alert descriptions (RFC 8446 §6) the cases expect; None is no alert, only a close.
const (
	None              = -1
	UnexpectedMessage = 10
	RecordOverflow    = 22
	DecodeError       = 50
	ProtocolVersion   = 70
	InternalError     = 80
)

// Served is a case's Want when the bytes are a hello a server must take.
const Served = -2

// Case is one first flight and what crypto/tls answers to it: an alert, None, or Served.
type Case struct {
	Name string
	Data []byte
	Want int
}

// GoHello is the first record a crypto/tls client with cfg sends: its ClientHello.
func GoHello(cfg *tls.Config) ([]byte, error) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		return nil, fmt.Errorf("reading the client's first record: %w", err)
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr)
	if _, err := io.ReadFull(server, rec[5:]); err != nil {
		return nil, fmt.Errorf("reading the client's first record: %w", err)
	}
	return rec, nil
}

// Hello is a ClientHello taken apart, to be put together again with a defect.
type Hello struct {
	Version                       uint16
	Random, SessionID, Suites, CM []byte
	Exts                          []Ext
}

// Ext is one extension.
type Ext struct {
	Type uint16
	Data []byte
}

var errShape = errors.New("not a one-record ClientHello with extensions")

// Parse takes apart a one-record ClientHello, as GoHello returns.
func Parse(rec []byte) (*Hello, error) {
	if len(rec) < 9 || rec[0] != 22 || rec[5] != 1 {
		return nil, errShape
	}
	r := reader(rec[9:])
	h := &Hello{Version: r.u16(), Random: r.take(32)}
	h.SessionID, h.Suites, h.CM = r.take(int(r.u8())), r.take(int(r.u16())), r.take(int(r.u8()))
	exts := reader(r.take(int(r.u16())))
	for len(exts) >= 4 {
		typ := exts.u16()
		h.Exts = append(h.Exts, Ext{typ, exts.take(int(exts.u16()))})
	}
	if r == nil || exts == nil || len(h.Exts) == 0 {
		return nil, errShape
	}
	return h, nil
}

// Body is the ClientHello's body, every length as written.
func (h *Hello) Body() []byte {
	b := binary.BigEndian.AppendUint16(nil, h.Version)
	b = append(b, h.Random...)
	b = append(append(b, byte(len(h.SessionID))), h.SessionID...)
	b = append(binary.BigEndian.AppendUint16(b, uint16(len(h.Suites))), h.Suites...)
	b = append(append(b, byte(len(h.CM))), h.CM...)
	var exts []byte
	for _, e := range h.Exts {
		exts = binary.BigEndian.AppendUint16(exts, e.Type)
		exts = append(binary.BigEndian.AppendUint16(exts, uint16(len(e.Data))), e.Data...)
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(len(exts))), exts...)
}

// With is a copy of h whose extension typ has data (added at the end if h has none).
func (h *Hello) With(typ uint16, data []byte) *Hello {
	c := *h
	c.Exts = append([]Ext(nil), h.Exts...)
	for i, e := range c.Exts {
		if e.Type == typ {
			c.Exts[i].Data = data
			return &c
		}
	}
	c.Exts = append(c.Exts, Ext{typ, data})
	return &c
}

// Record is one TLS record of typ around payload (record version 3.1, as clients send
// the first flight).
func Record(typ byte, payload []byte) []byte {
	return append([]byte{typ, 3, 1, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// Handshake is a handshake message of typ around body.
func Handshake(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// Flight is body as a ClientHello in one record.
func Flight(body []byte) []byte { return Record(22, Handshake(1, body)) }

// reader reads big-endian fields; it becomes nil once a read runs past its end.
type reader []byte

func (r *reader) take(n int) []byte {
	if *r == nil || len(*r) < n {
		*r = nil
		return nil
	}
	out := (*r)[:n]
	*r = (*r)[n:]
	return out
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}
