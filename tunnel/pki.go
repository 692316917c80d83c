package tunnel

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/tlsd/tlsd/certs"
)

// PKI is one side's tunnel credentials: its certificate and key, and the CAs that
// sign the other side's. They are read from files and read again on every reload
// (SIGHUP, or a change in their directories), like endpoint certificates: new sessions
// use what the files hold now, open sessions carry on with what they began with, so a
// rotation drops nothing. A change that does not load keeps the credentials in use.
type PKI struct {
	certFile, keyFile, caFile string
	agent                     bool // an agent's: its certificate names it, for good
	cur                       atomic.Pointer[creds]
	mu                        sync.Mutex // serialises Reload
	lastErr                   atomic.Pointer[string]
}

type creds struct {
	cert  tls.Certificate
	roots *x509.CertPool
	sum   [32]byte // of the three files' contents: a reload that changes nothing says nothing
}

// LoadPKI reads the files; every later Reload reads them again. agent says they
// are an agent's: a new certificate must then name the same agent.
func LoadPKI(certFile, keyFile, caFile string, agent bool) (*PKI, error) {
	p := &PKI{certFile: certFile, keyFile: keyFile, caFile: caFile, agent: agent}
	c, err := p.read()
	if err != nil {
		return nil, err
	}
	p.cur.Store(c)
	return p, nil
}

func (p *PKI) read() (*creds, error) {
	crt, err := os.ReadFile(p.certFile)
	if err != nil {
		return nil, fmt.Errorf("tunnel certificate: %w", err)
	}
	key, err := os.ReadFile(p.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tunnel key: %w", err)
	}
	ca, err := os.ReadFile(p.caFile)
	if err != nil {
		return nil, fmt.Errorf("tunnel CA: %w", err)
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("tunnel certificate %s and key %s: %w", p.certFile, p.keyFile, err)
	}
	roots := x509.NewCertPool()
	if err := certs.AddFiles(roots, p.caFile); err != nil {
		return nil, fmt.Errorf("tunnel CA: %w", err)
	}
	return &creds{cert: cert, roots: roots, sum: sha256.Sum256(bytes.Join([][]byte{crt, key, ca}, []byte{0}))}, nil
}

// Files are the files read, for the watcher.
func (p *PKI) Files() []string {
	if p == nil {
		return nil
	}
	return []string{p.certFile, p.keyFile, p.caFile}
}

// Leaf is the certificate in use.
func (p *PKI) Leaf() *x509.Certificate { return p.cur.Load().cert.Leaf }

// Reload reads the files again. A certificate naming another agent than the one in use
// is refused: an agent's name is its identity at the edge, fixed for the process.
func (p *PKI) Reload(log *slog.Logger) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur.Load()
	c, err := p.read()
	if err == nil && p.agent && Identity(c.cert.Leaf) != Identity(old.cert.Leaf) {
		err = fmt.Errorf("the new certificate %s names %q, this process runs as %q: restart to change the name",
			p.certFile, Identity(c.cert.Leaf), Identity(old.cert.Leaf))
	}
	if err != nil {
		msg := err.Error()
		if last := p.lastErr.Swap(&msg); last == nil || *last != msg {
			log.Error("tunnel credentials not reloaded; the ones in use stay", "error", err)
		}
		return
	}
	p.lastErr.Store(nil)
	if c.sum == old.sum {
		return
	}
	p.cur.Store(c)
	log.Info("tunnel credentials reloaded: new sessions use them, open ones carry on", "certificate", p.certFile,
		"not_after", c.cert.Leaf.NotAfter, "serial", c.cert.Leaf.SerialNumber.Text(16))
}

// LastError is why the files, changed, did not load ("" when they did): the
// credentials in use are the earlier ones.
func (p *PKI) LastError() string {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return ""
}

// ServerTLS is the edge's tunnel listener configuration: TLS 1.3, a client certificate
// signed by the agents' CA required, each handshake with the credentials of the moment.
func (p *PKI) ServerTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := p.cur.Load()
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c.cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: c.roots}, nil
	}}
}

// ClientTLS is the agent's dialing configuration as the files say now: TLS 1.3, its
// client certificate, the CAs that sign the edge's. The agent takes a fresh one for every
// session it dials.
func (p *PKI) ClientTLS() *tls.Config {
	c := p.cur.Load()
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c.cert}, RootCAs: c.roots}
}
