// Package tunnel is the wire format between a tlsd edge and its agents: the agent dials out
// to the edge (TLS 1.3, both sides authenticated) and keeps one yamux session, with the
// configuration both sides use; the edge opens a stream per client connection, starting
// with the small Header that names the endpoint and the client, before the client's
// bytes. The edge's side lives in tunnel/server, the agent's in tunnel/client.
package tunnel

import (
	"cmp"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Header precedes the bytes of every stream.
type Header struct {
	Endpoint string `json:"endpoint"`
	Client   string `json:"client"` // the client's address, for logs and PROXY headers
	Local    string `json:"local"`  // the edge address the client connected to
	SNI      string `json:"sni"`    // the server name the client asked for
	// Plain says the edge terminated TLS and the bytes are plaintext; otherwise they are
	// the client's TLS records, untouched.
	Plain bool `json:"plain"`
	// TLS is what the edge's handshake settled, on a Plain stream: the agent passes it
	// to the upstream in a PROXY v2 header.
	TLS *TLS `json:"tls,omitempty"`
	// Drain, on a stream that carries nothing else, says the edge process hands over to
	// a new one: the agent opens a session to it, and keeps this one for the streams it
	// carries until the old process closes it.
	Drain bool `json:"drain,omitempty"`
	// Report, on a stream that carries nothing else, asks the agent for its Report: the
	// certificates it holds, which the edge shows beside the endpoints it routes to it.
	Report bool `json:"report,omitempty"`
}

// Report is what an agent says of the certificates it holds, one per endpoint it
// terminates.
type Report struct {
	Certificates []ReportedCertificate `json:"certificates"`
}

// ReportedCertificate is one endpoint's certificate at the agent.
type ReportedCertificate struct {
	Endpoint  string    `json:"endpoint"`
	NotAfter  time.Time `json:"not_after"`
	Serial    string    `json:"serial,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Source    string    `json:"source,omitempty"` // file, acme
	State     string    `json:"state,omitempty"`  // ACME: pending, valid, renewing, failed
	Error     string    `json:"error,omitempty"`
	Challenge string    `json:"challenge,omitempty"`
}

// Bounds of a report: what one agent may make the edge hold and show.
const (
	maxReport      = 512 << 10
	MaxReportItems = 1000
	maxReportText  = 256
)

// WriteReport writes r as JSON (the stream's end ends it), within the bounds
// ReadReport keeps.
func WriteReport(w io.Writer, r Report) error {
	r.bound()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // six bytes for a '<' would take a bounded report past maxReport
	return enc.Encode(r)
}

// bound cuts r to MaxReportItems certificates and each text to maxReportText bytes.
func (r *Report) bound() {
	if len(r.Certificates) > MaxReportItems {
		r.Certificates = r.Certificates[:MaxReportItems]
	}
	for i := range r.Certificates {
		c := &r.Certificates[i]
		for _, s := range []*string{&c.Endpoint, &c.Serial, &c.Issuer, &c.Source, &c.State, &c.Error, &c.Challenge} {
			*s = bound(*s)
		}
	}
}

// ReadReport reads what WriteReport wrote, bounded in size and in what each text may
// hold: the agent is authenticated, but what it says is shown on the edge's pages.
func ReadReport(r io.Reader) (Report, error) {
	var rep Report
	data, err := io.ReadAll(io.LimitReader(r, maxReport+1))
	if err != nil {
		return rep, fmt.Errorf("read report: %w", err)
	}
	if len(data) > maxReport {
		return rep, fmt.Errorf("report larger than %d bytes", maxReport)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return rep, fmt.Errorf("report: %w", err)
	}
	rep.bound()
	return rep, nil
}

func bound(s string) string {
	if len(s) > maxReportText {
		return s[:maxReportText] + "..."
	}
	return s
}

// TLS is a terminated connection's TLS, as relay.Info records it.
type TLS struct {
	Version    uint16 `json:"version"`
	ALPN       string `json:"alpn,omitempty"`
	Resumed    bool   `json:"resumed,omitempty"`
	ClientCert string `json:"client_cert,omitempty"`
	ClientCN   string `json:"client_cn,omitempty"`
}

const maxHeader = 4 << 10

// WriteHeader writes h as a 2-byte length and JSON.
func WriteHeader(w io.Writer, h Header) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(data) > maxHeader {
		return fmt.Errorf("tunnel header of %d bytes is too large", len(data))
	}
	buf := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(data)), uint16(len(data)))
	_, err = w.Write(append(buf, data...))
	return err
}

// ReadHeader reads what WriteHeader wrote.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return h, fmt.Errorf("read tunnel header: %w", err)
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size > maxHeader {
		return h, fmt.Errorf("tunnel header of %d bytes is too large", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return h, fmt.Errorf("read tunnel header: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("tunnel header: %w", err)
	}
	if h.Endpoint == "" && !h.Drain && !h.Report {
		return h, errors.New("tunnel header names no endpoint")
	}
	return h, nil
}

// Identity is the agent name a certificate stands for: its first DNS name, else its
// common name.
func Identity(cert *x509.Certificate) string {
	if len(cert.DNSNames) > 0 {
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}

// DefaultWindow is a stream's receive window: how much one stream may have in flight.
// yamux grants more once half of it is used, so a stream moves about 0.75 window per
// round trip: 16 MiB fill 1 Gbit/s at 100 ms (BenchmarkTunnelWAN, 50 ms: 0.99 of a
// direct stream, against 0.71 with 8 MiB and 0.14 with the former 1 MiB). The price: a
// stream whose reader stalls may hold up to a window buffered.
const DefaultWindow = 16 << 20

// MinWindow is the least window yamux accepts (its initial one).
const MinWindow = 256 << 10

// MuxConfig is the yamux configuration of both sides, with streams' receive window
// (0: DefaultWindow). Heartbeats find a dead peer; half-closed streams may stay
// half-closed as long as the connection they carry does.
func MuxConfig(window uint32) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.StreamCloseTimeout = 0
	c.StreamOpenTimeout = 10 * time.Second
	c.MaxStreamWindowSize = max(cmp.Or(window, DefaultWindow), MinWindow)
	c.LogOutput = io.Discard
	return c
}
