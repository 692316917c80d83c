// Package relay carries a client connection to its destination once tlsd knows where it
// goes: the Conn a Handler receives (with the bytes already peeked from it), the Info that
// becomes its log line, and the byte-moving engine both edge and upstream use: the epoll relay
// loop (an idle passthrough connection holds no goroutine and no buffer), splice through
// pooled pipes, half-close, and the copies that tell a peer that left from a broken one.
package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"
	"unicode/utf8"
)

// Handler takes a client connection to its destination. It owns c and must close it.
type Handler interface {
	Serve(ctx context.Context, c *Conn)
}

// Conn is a client connection on its way through tlsd.
type Conn struct {
	// Conn is the client side: the raw socket (then Peeked holds bytes already read from
	// it, to be replayed first) or the plaintext of a TLS connection tlsd terminated.
	net.Conn
	Peeked []byte
	// Hello is the client's ClientHello, as peeked.
	Hello *tls.ClientHelloInfo
	// Deadline ends the handshake phase (peek, TLS handshake, upstream dial); whoever
	// starts copying clears it.
	Deadline time.Time
	Info     *Info
	// Loop and Detach, when the server sets them, let a handler return while the
	// connection lives on in the Loop without a goroutine: Detach takes what ends the
	// connection early (a bounded drain, a shutdown) in place of closing the socket, and
	// returns the function to call once the connection is over.
	Loop   *Loop
	Detach func(io.Closer) (finish func())
	// Dialed, when set, is told of the upstream connection once it is dialed: the agent
	// judges timeouts on that socket, its side of the tunnel having none.
	Dialed func(up net.Conn)
}

// Replay returns a net.Conn that reads Peeked before the rest of the connection. Use it
// only where a TLS handshake follows anyway: passthrough writes Peeked itself and copies
// from the raw socket, so that the kernel can splice.
func (c *Conn) Replay() net.Conn {
	if len(c.Peeked) == 0 {
		return c.Conn
	}
	return &prefixConn{Conn: c.Conn, r: io.MultiReader(bytes.NewReader(c.Peeked), c.Conn)}
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// ClientAddr is the client's address: the one a trusted PROXY header gave, else the
// peer's.
func (c *Conn) ClientAddr() net.Addr {
	if c.Info != nil && c.Info.Client != nil {
		return c.Info.Client
	}
	return c.RemoteAddr()
}

// NetConn is the connection underneath, as tls.Conn's NetConn says.
func (p *prefixConn) NetConn() net.Conn { return p.Conn }

// Info records one connection for its log line.
type Info struct {
	Endpoint       string
	Mode           string   // edge | agent | upstream
	Client         net.Addr // the client: the TCP peer, or what a trusted PROXY header said
	Local          net.Addr // what the client connected to, when a PROXY header said so
	SNI            string
	TLSVersion     uint16 // where tlsd terminated
	ALPN           string // the protocol negotiated where tlsd terminated
	Resumed        bool   // the TLS session was resumed
	ClientCert     string // "" (none presented), CertVerified or CertUnverified
	ClientCN       string // the client certificate's common name
	ClientIdentity string // client certificate subject (mutual TLS)
	Upstream       string
	// UpstreamResult is "ok" or "failed" once tlsd dialed (or refused to dial) an upstream
	// entry; UpstreamDial and UpstreamTLS time the connect and a tls:// handshake.
	UpstreamResult            string
	UpstreamDial, UpstreamTLS time.Duration
	BytesIn                   int64 // client -> upstream
	BytesOut                  int64 // upstream -> client
	Start                     time.Time
	Handshake                 string        // "ok" or "failed" where tlsd ran a TLS handshake, else ""
	HandshakeTime             time.Duration // how long that handshake took
	Code                      string        // why it failed, as a short stable word for metrics
	Reason                    string        // why it failed, for humans; "" when it did not
}

// What Info.ClientCert says of a certificate the client presented.
const (
	CertVerified   = "verified"   // it chains to the endpoint's client CAs
	CertUnverified = "unverified" // verification_strategy: require-any checks nothing
)

// Fail records why the connection failed, keeping the first reason. code is a short
// stable word (metric label); reason is the sentence for the log.
func (i *Info) Fail(code, reason string) {
	if i.Reason == "" {
		i.Code, i.Reason = code, reason
	}
}

// Bounds of what a client controls in a log line: a DNS name is 253 bytes at most; a
// certificate subject or a sentence with one in it gets some room more.
const (
	MaxLoggedName   = 253
	MaxLoggedReason = 512
)

// Bound cuts a string a peer controls to max bytes (at a rune boundary) and says how
// long it was. The log handler escapes what it prints; this bounds how much.
func Bound(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}

// LogEnd writes the one line a connection gets when it ends. What the client sent (its
// server name, its certificate's subject, reasons quoting them) is bounded.
func LogEnd(log *slog.Logger, info *Info) {
	attrs := []any{"mode", ModeNone}
	if info.Endpoint != "" {
		attrs = []any{"endpoint", info.Endpoint, "mode", info.Mode}
	}
	client := ""
	if info.Client != nil {
		client = info.Client.String()
	}
	attrs = append(attrs, "client", client, "sni", Bound(info.SNI, MaxLoggedName),
		"bytes_in", info.BytesIn, "bytes_out", info.BytesOut, "duration_ms", Milliseconds(time.Since(info.Start)))
	if info.TLSVersion != 0 {
		attrs = append(attrs, "tls_version", tls.VersionName(info.TLSVersion))
	}
	if info.ALPN != "" {
		attrs = append(attrs, "alpn", Bound(info.ALPN, MaxLoggedName))
	}
	if info.ClientIdentity != "" {
		attrs = append(attrs, "client_identity", Bound(info.ClientIdentity, MaxLoggedReason))
	}
	if info.Upstream != "" {
		attrs = append(attrs, "upstream", info.Upstream)
	}
	if info.Reason != "" {
		log.Warn("connection failed", append(attrs, "reason_code", info.Code, "reason", Bound(info.Reason, MaxLoggedReason))...)
		return
	}
	log.Info("connection closed", attrs...)
}

// ModeNone is the mode of a connection no endpoint took (no or unknown SNI, not TLS, a
// silent client), in logs and metric labels.
const ModeNone = "none"

// Milliseconds is d in milliseconds, to the microsecond: log fields carry their unit in
// their name and a number a log pipeline can sum.
func Milliseconds(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// OnFreshStack runs f on a goroutine of its own and waits for it. Parsing a ClientHello
// and running a TLS handshake go deep into crypto/tls and grow the goroutine's stack to
// tens of kilobytes; Go shrinks stacks only at garbage collections, which an idle
// proxy rarely runs, so a connection's long-lived goroutine would keep that stack while
// it sits idle. A goroutine that ends gives its stack back at once.
func OnFreshStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
