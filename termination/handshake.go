// Package termination is the server side of the TLS that tlsd terminates, at the edge or
// at the agent: the tls.Config an endpoint gets (versions, AEAD suites, client CAs, the
// ACME challenge hook), its session ticket keys and their rotation, and the handshake
// with failure reasons an operator can act on. It takes plain values and never reads
// configuration files.
package termination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// ACMEALPN is the protocol of ACME TLS-ALPN-01 validation connections (RFC 8737).
const ACMEALPN = "acme-tls/1"

// Handshake completes a TLS handshake with the client of c, replaying its peeked
// ClientHello, and returns the connection that carries plaintext. The handshake must end
// by c.Deadline. On failure c.Info says why in words and the client is closed.
func Handshake(ctx context.Context, c *relay.Conn, cfg *tls.Config) (*tls.Conn, error) {
	if !c.Deadline.IsZero() {
		c.Conn.SetDeadline(c.Deadline)
	}
	tc := tls.Server(c.Replay(), cfg)
	start := time.Now()
	// The handshake goes deep into crypto/tls; see OnFreshStack.
	err := relay.OnFreshStack(func() error { return tc.HandshakeContext(ctx) })
	c.Info.HandshakeTime = time.Since(start)
	if err != nil {
		c.Info.Handshake = "failed"
		c.Info.Fail(HandshakeFailure(err, c.Hello, cfg))
		c.Conn.Close()
		return nil, err
	}
	c.Info.Handshake = "ok"
	relay.QuickAck(c.Conn) // the client's first request must not wait for our ACK of its Finished
	record(c.Info, tc.ConnectionState())
	return tc, nil
}

// record notes what the handshake settled, for the log line and the upstream's PROXY
// header.
func record(info *relay.Info, st tls.ConnectionState) {
	info.TLSVersion, info.ALPN, info.Resumed = st.Version, st.NegotiatedProtocol, st.DidResume
	if len(st.PeerCertificates) == 0 {
		return
	}
	leaf := st.PeerCertificates[0]
	info.ClientIdentity, info.ClientCN = Identity(leaf), leaf.Subject.CommonName
	info.ClientCert = relay.CertUnverified
	if len(st.VerifiedChains) > 0 {
		info.ClientCert = relay.CertVerified
	}
}

// Identity names a verified client certificate: its subject, and its first DNS name or
// email address when it has one.
func Identity(cert *x509.Certificate) string {
	id := cert.Subject.String()
	switch {
	case len(cert.DNSNames) > 0:
		id += " (DNS:" + cert.DNSNames[0] + ")"
	case len(cert.EmailAddresses) > 0:
		id += " (email:" + cert.EmailAddresses[0] + ")"
	}
	return id
}

// ErrCertificateNotReady is wrapped by certificate sources that have nothing to serve
// yet (an ACME order under way); the wrapping error says why.
var ErrCertificateNotReady = errors.New("certificate not issued yet")

// HandshakeFailure explains a failed server handshake in words an operator can act on,
// with a short code for metrics.
func HandshakeFailure(err error, hello *tls.ClientHelloInfo, cfg *tls.Config) (code, reason string) {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var netErr net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, ErrCertificateNotReady):
		return "certificate_pending", msg
	case strings.Contains(msg, "unsupported versions") || strings.Contains(msg, "protocol version not supported"):
		return "version", fmt.Sprintf("client offered %s, endpoint requires %s", offeredVersions(hello), requiredVersions(cfg))
	case strings.Contains(msg, "didn't provide a certificate"):
		return "no_client_cert", "client sent no certificate; this endpoint requires mutual TLS"
	case errors.As(err, &unknownCA):
		return "client_cert_unknown_ca", fmt.Sprintf("client certificate %q signed by unknown authority %q", unknownCA.Cert.Subject.CommonName,
			unknownCA.Cert.Issuer.CommonName)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "client_cert_expired", fmt.Sprintf("client certificate %q expired or not yet valid (valid %s to %s)", invalid.Cert.Subject.CommonName,
			invalid.Cert.NotBefore.UTC().Format(time.DateOnly), invalid.Cert.NotAfter.UTC().Format(time.DateOnly))
	case errors.As(err, &invalid):
		return "client_cert_invalid", fmt.Sprintf("client certificate %q rejected: %s", invalid.Cert.Subject.CommonName, invalid.Error())
	case errors.Is(err, ErrNotAllowed):
		return "client_cert_not_allowed", strings.TrimPrefix(msg, "tls: ")
	case strings.Contains(msg, "unsupported application protocols"):
		return "alpn", fmt.Sprintf("client offered ALPN %s, endpoint offers %s", offeredProtos(hello), quoteList(cfg.NextProtos))
	case strings.Contains(msg, "no cipher suite supported by both"):
		return "no_shared_cipher", "no cipher suite in common with the client (tlsd offers only AEAD suites with TLS 1.2)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "handshake_timeout", "handshake not finished before the handshake timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed):
		return "client_closed", "client closed the connection during the TLS handshake"
	case strings.Contains(msg, "remote error"):
		return "client_rejected", "client rejected the handshake: " + strings.TrimPrefix(msg, "remote error: tls: ")
	}
	return "handshake_failed", "TLS handshake failed: " + strings.TrimPrefix(msg, "tls: ")
}

func offeredVersions(hello *tls.ClientHelloInfo) string {
	var real []uint16
	if hello != nil {
		real = slices.DeleteFunc(slices.Clone(hello.SupportedVersions), isGREASE)
	}
	if len(real) == 0 {
		return "no TLS version it can use"
	}
	return VersionName(slices.Max(real)) + " at most"
}

// requiredVersions says what the endpoint accepts: "TLS 1.2", "TLS 1.2 at most".
func requiredVersions(cfg *tls.Config) string {
	switch {
	case cfg.MaxVersion != 0 && cfg.MaxVersion == cfg.MinVersion:
		return VersionName(cfg.MinVersion) + " exactly"
	case cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13:
		return VersionName(cfg.MinVersion) + " to " + VersionName(cfg.MaxVersion)
	}
	return VersionName(cfg.MinVersion)
}

// offeredProtos lists the client's ALPN protocols, bounded: it chose them.
func offeredProtos(hello *tls.ClientHelloInfo) string {
	if hello == nil || len(hello.SupportedProtos) == 0 {
		return "nothing"
	}
	protos := hello.SupportedProtos[:min(len(hello.SupportedProtos), 8)]
	s := quoteList(protos)
	if len(hello.SupportedProtos) > len(protos) {
		s += fmt.Sprintf(" (+%d more)", len(hello.SupportedProtos)-len(protos))
	}
	return s
}

func quoteList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// isGREASE spots the reserved values clients send to keep servers tolerant (RFC 8701).
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// VersionName spells a TLS version as people do ("TLS 1.2").
func VersionName(v uint16) string {
	switch v {
	case 0:
		return "TLS 1.2" // crypto/tls's server default minimum
	case tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
		return tls.VersionName(v)
	}
	if v == 0x0300 {
		return "SSL 3.0"
	}
	return fmt.Sprintf("TLS version 0x%04x", v)
}
