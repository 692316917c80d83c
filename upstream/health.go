package upstream

import (
	"context"
	"crypto/tls"
	"sync"
	"time"
)

// Check is the active health check of one upstream address.
type Check struct {
	Addr              string
	Interval, Timeout time.Duration
	// Handshake makes the check a full TLS handshake for ServerName, verified with TLS
	// (a tls:// upstream's configuration, never modified here); with TLS nil, the
	// handshake of a server behind passthrough, whose CAs tlsd does not know, is the sign
	// of life, not of identity. Otherwise an accepted connection is health enough.
	Handshake  bool
	ServerName string
	TLS        *tls.Config
}

// clientConfig is the TLS a handshake check speaks.
func (c Check) clientConfig() *tls.Config {
	if c.TLS == nil {
		return &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // liveness only
	}
	cfg := c.TLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = c.ServerName
	}
	return cfg
}

// Checks runs active health checks, one goroutine per address however many endpoints
// share it, until Stop.
type Checks struct {
	mu      sync.Mutex // guards running
	running map[string]*runningCheck
	wg      sync.WaitGroup
}

type runningCheck struct {
	spec   Check
	cancel context.CancelFunc
}

// Set runs exactly checks: new addresses start (checked at once), changed ones restart,
// the others stop. health gives each address its Health.
func (c *Checks) Set(checks []Check, health func(addr string) *Health) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == nil {
		c.running = map[string]*runningCheck{}
	}
	want := map[string]Check{}
	for _, ch := range checks {
		if _, dup := want[ch.Addr]; !dup {
			want[ch.Addr] = ch
		}
	}
	for addr, r := range c.running {
		if w, ok := want[addr]; !ok || w != r.spec {
			r.cancel()
			delete(c.running, addr)
		}
	}
	for addr, spec := range want {
		if c.running[addr] == nil {
			c.start(spec, health(addr))
		}
	}
}

func (c *Checks) start(spec Check, h *Health) {
	ctx, cancel := context.WithCancel(context.Background())
	c.running[spec.Addr] = &runningCheck{spec: spec, cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		runCheck(ctx, spec, h)
	}()
}

// Stop ends every check and waits for them.
func (c *Checks) Stop() {
	c.mu.Lock()
	for addr, r := range c.running {
		r.cancel()
		delete(c.running, addr)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func runCheck(ctx context.Context, spec Check, h *Health) {
	t := time.NewTicker(spec.Interval)
	defer t.Stop()
	for {
		h.Checked(probe(ctx, spec), time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe connects to the address, and completes a TLS handshake if the check asks for one.
func probe(ctx context.Context, spec Check) error {
	deadline := time.Now().Add(spec.Timeout)
	c, err := dialAddr(ctx, spec.Addr, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	if !spec.Handshake {
		return nil
	}
	cfg := spec.clientConfig()
	tc := tls.Client(c, cfg)
	tc.SetDeadline(deadline)
	if err := tc.HandshakeContext(ctx); err != nil {
		return upstreamTLSFailure(spec.Addr, cfg.ServerName, err)
	}
	return nil
}
