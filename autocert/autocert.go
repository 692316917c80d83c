// Package autocert obtains and renews certificates from ACME servers (Let's Encrypt,
// ZeroSSL, step-ca, Pebble in tests) for edge and agent endpoints, with certmagic doing
// the ACME protocol, external account binding, the TLS-ALPN-01 and HTTP-01 challenges
// and storage locking, and tlsd publishing DNS-01 records itself (RFC 2136 with TSIG, or
// an operator's hook). tlsd drives the schedule itself: an
// endpoint is served at once, its handshakes fail with a clear reason until the first
// certificate arrives, renewal happens at two thirds of the lifetime, and failures back
// off exponentially, each domain on its own so one broken issuer harms no one else.
package autocert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/tlsd/tlsd/certs"
	"github.com/tlsd/tlsd/termination"
)

// ALPN is the protocol of TLS-ALPN-01 challenge connections (RFC 8737).
const ALPN = termination.ACMEALPN

// States of a domain's certificate.
const (
	StatePending  = "pending"  // no certificate yet; the first order is under way or waiting to retry
	StateValid    = "valid"    // a certificate is served
	StateRenewing = "renewing" // a certificate is served and its successor is being ordered
	StateFailed   = "failed"   // the last order failed; NextRetry says when the next one starts
)

// IssuerConfig describes an ACME account.
type IssuerConfig struct {
	Name      string
	Directory string
	Email     string
	CARoots   []string // PEM files to trust for the ACME server's HTTPS
	// ListenAddr is where tlsd answers TLS-ALPN-01 (the endpoints' listener); certmagic
	// then finds the port taken and leaves the answering to tlsd.
	ListenAddr string
	// Challenges are the types offered, in order of preference; nil means tls-alpn-01.
	// Each is tried as an order of its own, so the type that validated is known.
	Challenges []string
	// HTTPAddr is tlsd's HTTP listener (--http-listen), where HTTP-01 is answered.
	HTTPAddr string
	// EAB binds the account to one the CA knows (RFC 8555 §7.3.4); MACKey is base64url.
	EAB *acme.EAB
	DNS DNSConfig // how DNS-01 records are published
}

// Challenge types.
const (
	ChallengeTLSALPN = "tls-alpn-01"
	ChallengeHTTP    = "http-01"
	ChallengeDNS     = "dns-01"
)

// Options tune a Manager.
type Options struct {
	StateDir string // certificates and accounts go under StateDir/acme, unless Storage is set
	// Storage, when set, holds certificates, accounts, challenge answers and locks instead
	// of StateDir: a fleet's shared store, so one edge orders for all and any edge answers
	// the challenge.
	Storage certmagic.Storage
	// Poll, when set, is how often a served certificate is compared with the stored one,
	// so that one another edge renewed is served here too.
	Poll      time.Duration
	RetryBase time.Duration
	RetryMax  time.Duration
	Logger    *slog.Logger
	// OnOrder is told of every finished order: the challenge type it used (the last
	// tried, when none validated) and whether it succeeded.
	OnOrder func(issuer, challenge string, ok bool)
}

// Manager is one ACME account and the domains it keeps certificates for.
type Manager struct {
	cfg   IssuerConfig
	opts  Options
	magic *certmagic.Config
	// issuers are one certmagic issuer per challenge type offered, in order of preference;
	// they share the account and the storage.
	issuers []challengeIssuer
	cache   *certmagic.Cache
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex // guards domains
	domains map[string]*Domain
}

// New sets up the account; nothing is ordered until Domain is called.
func New(cfg IssuerConfig, opts Options) (*Manager, error) {
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Minute
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 6 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	roots, err := rootPool(cfg.CARoots)
	if err != nil {
		return nil, fmt.Errorf("issuer %s: %w", cfg.Name, err)
	}
	var storage certmagic.Storage = &certmagic.FileStorage{Path: filepath.Join(opts.StateDir, "acme")}
	if opts.Storage != nil {
		storage = opts.Storage
	}
	m := &Manager{cfg: cfg, opts: opts, domains: map[string]*Domain{}}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		Logger:           zap.NewNop(),
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{Storage: storage, Logger: zap.NewNop()})
	if err := m.makeIssuers(roots); err != nil {
		return nil, fmt.Errorf("issuer %s: %w", cfg.Name, err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func splitListen(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	p, _ := strconv.Atoi(port)
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = ""
	}
	return host, p
}

func rootPool(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil // the system's roots
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if err := certs.AddFiles(pool, files...); err != nil {
		return nil, fmt.Errorf("ca_roots: %w", err)
	}
	return pool, nil
}

// Config is what the manager was made from.
func (m *Manager) Config() IssuerConfig { return m.cfg }

// Domain returns the certificate keeper for name. It does nothing until Retain starts
// it, so that a configuration that is never applied orders nothing.
func (m *Manager) Domain(name string) *Domain {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.domains[name]; d != nil {
		return d
	}
	d := &Domain{name: name, m: m, state: StatePending}
	// A certificate already in storage is served by the very generation that asks for
	// the domain (an endpoint switched back to this issuer, a restart): loading it
	// here, before that generation is switched in, leaves no window without one.
	d.loadStored(m.ctx)
	m.domains[name] = d
	return d
}

// Retain keeps certificates for exactly names: it starts the domains not yet running
// (loading a stored certificate or ordering one, in the background) and stops the others.
func (m *Manager) Retain(names map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, d := range m.domains {
		switch {
		case !names[name]:
			if d.cancel != nil {
				d.cancel()
			}
			delete(m.domains, name)
		case d.cancel == nil:
			ctx, cancel := context.WithCancel(m.ctx)
			d.cancel = cancel
			m.wg.Add(1)
			go func() { defer m.wg.Done(); d.run(ctx) }()
		}
	}
}

// Stop ends every domain's work and the account's background tasks.
func (m *Manager) Stop() {
	m.cancel()
	m.wg.Wait()
	m.cache.Stop()
}

// ChallengeConfig answers TLS-ALPN-01 challenge handshakes for this account.
func (m *Manager) ChallengeConfig() *tls.Config {
	return &tls.Config{NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS12,
		GetCertificate: m.magic.GetCertificate}
}

// issuerKey names the CA in storage keys; every challenge's issuer has the same.
func (m *Manager) issuerKey() string { return m.issuers[0].iss.IssuerKey() }

// storage keys of a domain's certificate and key, below the issuer's own directory.
func (m *Manager) keys(domain string) (crt, key string) {
	prefix := "tlsd/" + certmagic.StorageKeys.Safe(m.issuerKey()) + "/" + certmagic.StorageKeys.Safe(domain)
	return prefix + ".crt", prefix + ".key"
}

// Domain keeps one domain's certificate.
type Domain struct {
	name   string
	m      *Manager
	cancel context.CancelFunc

	mu        sync.Mutex // guards the following fields
	cert      *tls.Certificate
	state     string
	lastErr   string
	nextRetry time.Time
	challenge string // the type that validated the certificate served, "" if loaded
}

// Status is a domain's certificate state for /status.
type Status struct {
	State     string
	NotAfter  time.Time
	Serial    string
	Issuer    string
	Error     string
	NextRetry time.Time
	RenewAt   time.Time // when the certificate served is renewed
	// Challenge is the type that validated the certificate served: empty for one
	// loaded from storage (another process, or an earlier run, ordered it).
	Challenge string
}

// Status reports the state of the certificate.
func (d *Domain) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{State: d.state, Error: d.lastErr, NextRetry: d.nextRetry, Challenge: d.challenge}
	if d.cert != nil {
		s.NotAfter, s.Serial, s.Issuer = d.cert.Leaf.NotAfter, d.cert.Leaf.SerialNumber.Text(16), d.cert.Leaf.Issuer.CommonName
		s.RenewAt = renewAt(d.cert.Leaf)
	}
	return s
}

// Leaf is the certificate being served, or nil.
func (d *Domain) Leaf() *x509.Certificate {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cert == nil {
		return nil
	}
	return d.cert.Leaf
}

// ErrNotReady is returned during handshakes before the first certificate exists.
var ErrNotReady = termination.ErrCertificateNotReady

// GetCertificate serves the current certificate, or fails with the reason there is none.
func (d *Domain) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cert != nil {
		return d.cert, nil
	}
	if d.lastErr != "" {
		return nil, fmt.Errorf("%w for %s: issuer %s failed (%s); next try at %s", ErrNotReady, d.name, d.m.cfg.Name,
			d.lastErr, d.nextRetry.Format(time.RFC3339))
	}
	return nil, fmt.Errorf("%w for %s: ordering it from issuer %s", ErrNotReady, d.name, d.m.cfg.Name)
}

// run keeps the certificate valid until ctx ends: load or order, then renew at two thirds
// of each certificate's life, backing off after failures.
func (d *Domain) run(ctx context.Context) {
	if d.Leaf() == nil {
		d.loadStored(ctx) // another process may have stored one since
	}
	backoff := time.Duration(0)
	for {
		wait := time.Duration(0)
		if leaf := d.Leaf(); leaf != nil {
			wait = time.Until(renewAt(leaf))
		}
		if backoff > 0 {
			wait = backoff
		}
		switch d.sleep(ctx, wait) {
		case sleepEnded:
			return
		case sleepPickedUp:
			backoff = 0 // another process sharing the store got a certificate: start over from it
			continue
		}
		if d.Leaf() != nil {
			d.setState(StateRenewing)
		}
		c, challenge, err := d.obtain(ctx)
		if ctx.Err() != nil {
			return
		}
		if d.m.opts.OnOrder != nil && (challenge != "" || err != nil) {
			d.m.opts.OnOrder(d.m.cfg.Name, challenge, err == nil)
		}
		if err != nil {
			backoff = min(max(2*backoff, d.m.opts.RetryBase), d.m.opts.RetryMax)
			d.fail(err, time.Now().Add(backoff))
			continue
		}
		backoff = 0
		d.set(c, StateValid, "", time.Time{})
		d.setChallenge(challenge)
		d.m.opts.Logger.Info("certificate obtained", "issuer", d.m.cfg.Name, "domain", d.name, "challenge", challenge,
			"not_after", c.Leaf.NotAfter, "serial", c.Leaf.SerialNumber.Text(16))
	}
}

const (
	sleepDone = iota
	sleepEnded
	sleepPickedUp
)

// sleep waits for wait, or until ctx ends; with a shared store it looks every Poll for a
// certificate another process stored meanwhile, and stops waiting when it finds one.
func (d *Domain) sleep(ctx context.Context, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		step := time.Until(deadline)
		if p := d.m.opts.Poll; p > 0 && step > p {
			step = p
		}
		select {
		case <-ctx.Done():
			return sleepEnded
		case <-time.After(step):
		}
		if !time.Now().Before(deadline) {
			return sleepDone
		}
		if d.pickUpStored(ctx) {
			return sleepPickedUp
		}
	}
}

func renewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// loadStored serves the stored certificate while it is valid, even when it is due for
// renewal: a restart late in a certificate's life, with the ACME server down, must not
// leave the endpoint without one. The run loop renews a due one at once.
func (d *Domain) loadStored(ctx context.Context) {
	c, err := d.load(ctx)
	now := time.Now()
	if err != nil || now.Before(c.Leaf.NotBefore) || !now.Before(c.Leaf.NotAfter) {
		return
	}
	state := StateValid
	if !now.Before(renewAt(c.Leaf)) {
		state = StateRenewing
	}
	d.set(c, state, "", time.Time{})
	d.m.opts.Logger.Info("certificate loaded from storage", "issuer", d.m.cfg.Name, "domain", d.name,
		"not_after", c.Leaf.NotAfter, "due_for_renewal", state == StateRenewing)
}

// pickUpStored serves the stored certificate if it is newer than the one served (or
// there is none): another process sharing the store ordered it.
func (d *Domain) pickUpStored(ctx context.Context) bool {
	c, err := d.load(ctx)
	if err != nil || !time.Now().Before(c.Leaf.NotAfter) {
		return false
	}
	if cur := d.Leaf(); cur != nil && !c.Leaf.NotAfter.After(cur.NotAfter) {
		return false
	}
	state := StateValid
	if !time.Now().Before(renewAt(c.Leaf)) {
		state = StateRenewing
	}
	d.set(c, state, "", time.Time{})
	d.m.opts.Logger.Info("certificate ordered by another process sharing the store: serving it", "issuer", d.m.cfg.Name,
		"domain", d.name, "not_after", c.Leaf.NotAfter, "serial", c.Leaf.SerialNumber.Text(16))
	return true
}

func (d *Domain) set(c *tls.Certificate, state, errText string, next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cert, d.state, d.lastErr, d.nextRetry, d.challenge = c, state, errText, next, ""
}

func (d *Domain) setChallenge(challenge string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.challenge = challenge
}

func (d *Domain) setState(state string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = state
}

func (d *Domain) fail(err error, next time.Time) {
	msg := describe(err)
	d.mu.Lock()
	d.lastErr, d.nextRetry = msg, next
	if d.cert == nil || time.Now().After(d.cert.Leaf.NotAfter) {
		d.state, d.cert = StateFailed, nil
	} else {
		d.state = StateFailed // still serving the old certificate until it expires
	}
	d.mu.Unlock()
	d.m.opts.Logger.Warn("certificate order failed", "issuer", d.m.cfg.Name, "domain", d.name, "error", msg, "next_try", next)
}

// describe keeps the part of an ACME error an operator needs.
func describe(err error) string {
	var tries attempts
	if errors.As(err, &tries) {
		return tries.Error()
	}
	var p acme.Problem
	if errors.As(err, &p) {
		return strings.TrimSpace(p.Type + ": " + p.Detail)
	}
	return err.Error()
}

// obtain orders a certificate under the storage lock, unless another process sharing
// the storage ordered one meanwhile (challenge is then ""). Each challenge type the
// domain can use is tried in turn until one validates; challenge is the one that did,
// or the last tried.
func (d *Domain) obtain(ctx context.Context) (c *tls.Certificate, challenge string, err error) {
	storage := d.m.magic.Storage
	lock := "tlsd_issue_" + certmagic.StorageKeys.Safe(d.m.issuerKey()) + "_" + certmagic.StorageKeys.Safe(d.name)
	if err := storage.Lock(ctx, lock); err != nil {
		return nil, "", fmt.Errorf("lock storage: %w", err)
	}
	defer storage.Unlock(context.Background(), lock)
	if c, err := d.load(ctx); err == nil && time.Now().Before(renewAt(c.Leaf)) {
		if cur := d.Leaf(); cur == nil || !cur.Equal(c.Leaf) {
			return c, "", nil // another tlsd sharing this storage just ordered it
		}
	}
	list := d.m.issuersFor(d.name)
	if len(list) == 0 {
		return nil, "", fmt.Errorf("%s is a wildcard, which only dns-01 can prove, and issuer %s does not offer it", d.name, d.m.cfg.Name)
	}
	var tries attempts
	for _, ci := range list {
		challenge = ci.challenge
		if c, err = d.order(ctx, ci.iss); err == nil || ctx.Err() != nil {
			return c, challenge, err
		}
		d.m.opts.Logger.Debug("certificate order failed with this challenge", "issuer", d.m.cfg.Name, "domain", d.name,
			"challenge", challenge, "error", describe(err))
		tries = append(tries, attempt{challenge, err})
	}
	if len(tries) == 1 {
		return nil, challenge, tries[0].err
	}
	return nil, challenge, tries
}

// attempts are the failed orders of one round, one per challenge type.
type attempts []attempt

type attempt struct {
	challenge string
	err       error
}

func (a attempts) Error() string {
	parts := make([]string, len(a))
	for i, t := range a {
		parts[i] = t.challenge + ": " + describe(t.err)
	}
	return strings.Join(parts, "; ")
}

// order runs one ACME order and stores the result.
func (d *Domain) order(ctx context.Context, iss *certmagic.ACMEIssuer) (*tls.Certificate, error) {
	storage := d.m.magic.Storage
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{d.name}}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	issued, err := iss.Issue(ctx, csr)
	if err != nil {
		return nil, err
	}
	keyPEM, err := certmagic.PEMEncodePrivateKey(crypto.PrivateKey(key))
	if err != nil {
		return nil, err
	}
	crtKey, keyKey := d.m.keys(d.name)
	if err := storage.Store(ctx, keyKey, keyPEM); err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	if err := storage.Store(ctx, crtKey, issued.Certificate); err != nil {
		return nil, fmt.Errorf("store certificate: %w", err)
	}
	return pair(issued.Certificate, keyPEM)
}

func (d *Domain) load(ctx context.Context) (*tls.Certificate, error) {
	crtKey, keyKey := d.m.keys(d.name)
	crtPEM, err := d.m.magic.Storage.Load(ctx, crtKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := d.m.magic.Storage.Load(ctx, keyKey)
	if err != nil {
		return nil, err
	}
	c, err := pair(crtPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if !certs.Covers(c.Leaf, d.name) {
		return nil, fs.ErrNotExist
	}
	return c, nil
}

func pair(crtPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
