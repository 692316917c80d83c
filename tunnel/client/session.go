// Package client is the tunnel's agent side: it dials every edge it is given (every
// address an edge name resolves to), keeps an authenticated yamux session to each with
// backoff and jitter, reads the stream header of each stream an edge opens and hands the
// stream on, answers certificate-report streams, and drains on an upgrade.
package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tlsd/tlsd/tunnel"
)

// TunnelClient is the tunnel's agent side: it dials the edge, keeps a session up (reconnecting with
// exponential backoff and jitter), and hands every stream the edge opens to Handle.
type TunnelClient struct {
	Edge string      // the edge's tunnel address, host:port: its host is checked against the edge's certificate
	Addr string      // where to dial, when not Edge (one of the addresses Edge's name resolves to)
	TLS  *tls.Config // client certificate, the CA that signs the edge's, TLS 1.3
	// Report, when set, is what the agent tells an edge that asks of the certificates it
	// holds.
	Report func() tunnel.Report
	// Config, when set, gives each session its TLS configuration instead of TLS: the
	// credentials as their files hold them when the session is dialed.
	Config func() *tls.Config
	Handle func(ctx context.Context, h tunnel.Header, stream net.Conn)
	Log    *slog.Logger
	// BackoffBase and BackoffMax bound the wait between connection attempts.
	BackoffBase, BackoffMax time.Duration
	// Window is each stream's receive window (0: tunnel.DefaultWindow).
	Window uint32

	mu       sync.Mutex // guards the following fields
	since    time.Time  // zero while disconnected
	live     map[*yamux.Session]bool
	draining bool // Drain was called: no new streams, no reconnecting

	reconnects atomic.Int64
	streams    atomic.Int64
	active     atomic.Int64 // streams being served
}

// Drain asks the edge to open no more streams on this agent's sessions (yamux GoAway:
// the edge sends them to the agent's other sessions) and stops reconnecting; the streams
// open now go on. Active says when they are done.
func (a *TunnelClient) Drain() {
	a.mu.Lock()
	a.draining = true
	sessions := make([]*yamux.Session, 0, len(a.live))
	for s := range a.live {
		sessions = append(sessions, s)
	}
	a.mu.Unlock()
	for _, s := range sessions {
		s.GoAway()
	}
}

// Active is the number of streams being served.
func (a *TunnelClient) Active() int64 { return a.active.Load() }

func (a *TunnelClient) isDraining() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.draining
}

// track adds or removes a live session.
func (a *TunnelClient) track(s *yamux.Session, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live == nil {
		a.live = map[*yamux.Session]bool{}
	}
	if on {
		a.live[s] = true
	} else {
		delete(a.live, s)
	}
}

// TunnelStatus describes the agent's connection to the edge.
type TunnelStatus struct {
	Edge       string    `json:"edge"`
	Address    string    `json:"address,omitempty"` // the address dialed, when Edge is a name
	Connected  bool      `json:"connected"`
	Since      time.Time `json:"since,omitzero"`
	Reconnects int64     `json:"reconnects"`
	Streams    int64     `json:"streams"`
}

// Status reports the connection.
func (a *TunnelClient) Status() TunnelStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return TunnelStatus{Edge: a.Edge, Address: a.Addr, Connected: !a.since.IsZero(), Since: a.since,
		Reconnects: a.reconnects.Load(), Streams: a.streams.Load()}
}

// Run keeps a session to the edge until ctx ends, then closes it and waits for the
// streams being served.
func (a *TunnelClient) Run(ctx context.Context) {
	base, top := a.BackoffBase, a.BackoffMax
	if base <= 0 {
		base = 200 * time.Millisecond
	}
	if top <= 0 {
		top = 10 * time.Second
	}
	var streams, background sync.WaitGroup // background: sessions that carry streams after a hand-over
	defer background.Wait()
	defer streams.Wait()
	var wait, backoff time.Duration // backoff is the wait before jitter
	for attempt := 0; ; attempt++ {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil || a.isDraining() {
			<-ctx.Done()
			return
		}
		if attempt > 0 {
			a.reconnects.Add(1)
		}
		lived, err := a.session(ctx, &streams, &background)
		if ctx.Err() != nil || a.isDraining() {
			<-ctx.Done() // draining: the sessions left carry their streams until ctx ends
			return
		}
		if errors.Is(err, errHandedOver) {
			a.Log.Info(err.Error(), "edge", a.Edge)
			backoff, wait = 0, 0
			continue
		}
		if lived >= stableSession {
			// A session that worked a while: try again at once, then back off anew. One
			// that ends at once (the edge refusing this agent, say) keeps backing off.
			backoff, wait = 0, 0
		} else {
			backoff = min(max(2*backoff, base), top)
			wait = jitter(backoff)
		}
		a.Log.Warn("tunnel to the edge down; reconnecting", "edge", a.Edge, "error", errString(err), "retry_in", wait.Round(time.Millisecond))
	}
}

// stableSession is how long a session must have lived for its end to reset the backoff.
const stableSession = 10 * time.Second

// jitter spreads reconnects of many agents: a random wait in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func errString(err error) string {
	if err == nil {
		return "session ended"
	}
	return err.Error()
}

// session dials once and serves streams until the session ends; it says how long the
// session lived and why it ended.
func (a *TunnelClient) session(ctx context.Context, streams, background *sync.WaitGroup) (time.Duration, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}, Config: a.tlsConfig()}
	tc, err := d.DialContext(ctx, "tcp", cmp.Or(a.Addr, a.Edge))
	if err != nil {
		return 0, err
	}
	// With TLS 1.3 the edge's verdict on this agent's certificate arrives after the
	// handshake, as the first read's error; yamux would swallow it.
	c := &readErrConn{Conn: tc}
	mux, err := yamux.Server(c, tunnel.MuxConfig(a.Window))
	if err != nil {
		c.Close()
		return 0, err
	}
	// One round trip before calling this connected: the edge may be refusing us.
	if _, err := mux.Ping(); err != nil {
		mux.Close()
		return 0, cmp.Or(c.cause(), err)
	}
	start := time.Now()
	a.setSince(start)
	a.Log.Info("connected to the edge", "edge", a.Edge, "address", c.RemoteAddr().String(), "local", c.LocalAddr().String())
	context.AfterFunc(ctx, func() { mux.Close() })
	a.track(mux, true)
	if a.isDraining() {
		mux.GoAway()
	}
	drain, ended := make(chan struct{}), make(chan struct{})
	background.Add(1)
	go func() {
		defer background.Done()
		defer close(ended)
		defer a.track(mux, false)
		a.accept(ctx, mux, streams, sync.OnceFunc(func() { close(drain) }))
	}()
	select {
	case <-ended:
		a.setSince(time.Time{})
		return time.Since(start), c.cause()
	case <-drain:
		// This session goes on in the background, carrying its streams to their end.
		return time.Since(start), errHandedOver
	}
}

// errHandedOver ends a session whose edge process is handing over to a new one: Run
// dials again at once, and the old session carries its open streams until it closes.
var errHandedOver = errors.New("the edge hands over to a new process: connecting to it; the old session carries its open streams to their end")

// accept serves the streams the edge opens until the session ends; a drain notice calls
// onDrain.
func (a *TunnelClient) accept(ctx context.Context, mux *yamux.Session, streams *sync.WaitGroup, onDrain func()) {
	defer mux.Close()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			h, err := tunnel.ReadHeader(st)
			switch {
			case err != nil:
				a.Log.Warn("bad stream from the edge", "error", err)
				st.Close()
			case h.Drain:
				st.Close()
				onDrain()
			case h.Report:
				defer st.Close()
				st.SetWriteDeadline(time.Now().Add(10 * time.Second))
				var r tunnel.Report
				if a.Report != nil {
					r = a.Report()
				}
				tunnel.WriteReport(st, r)
			default:
				a.streams.Add(1)
				a.active.Add(1)
				defer a.active.Add(-1)
				st.SetReadDeadline(time.Time{})
				a.Handle(ctx, h, st)
			}
		}()
	}
}

// readErrConn remembers the first error a read of the connection returned.
type readErrConn struct {
	net.Conn
	mu  sync.Mutex // guards err
	err error
}

func (c *readErrConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// cause is why the session ended, as the edge or the network said it: nil for a clean
// end.
func (c *readErrConn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil || errors.Is(c.err, io.EOF) || errors.Is(c.err, net.ErrClosed) {
		return nil
	}
	return c.err
}

func (a *TunnelClient) setSince(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.since = t
}

// tlsConfig checks the edge's certificate for Edge's host, also when dialing an address.
func (a *TunnelClient) tlsConfig() *tls.Config {
	cfg := a.TLS
	if a.Config != nil {
		cfg = a.Config()
	}
	if a.Addr == "" || cfg == nil || cfg.ServerName != "" {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(a.Edge)
	return cfg
}
