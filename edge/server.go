package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// Config tunes a Server.
type Config struct {
	// HandshakeTimeout bounds the ClientHello peek, the TLS handshake and the upstream
	// dial of every connection, so slow or silent clients cost a goroutine and a file
	// descriptor for that long at most. Zero means 10 s.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger // nil: slog.Default()
	// OnRouted, if set, is called when a connection has found its route; OnEnd when any
	// accepted connection ends, with what happened to it. Both run on the connection's
	// goroutine and must not block.
	OnRouted func(*relay.Info)
	OnEnd    func(*relay.Info)
	// MaxHandshakes bounds the connections in their handshake phase (ClientHello, TLS
	// handshake, upstream dial) at once; past it a new connection is closed at once with
	// the reason. Zero means no bound. HelloBudget bounds the memory of large ClientHellos
	// being read; nil means none.
	MaxHandshakes int
	HelloBudget   *HelloBudget
	// DrainTimeout bounds how long a connection may go on once its route left the table
	// (its endpoint was removed or changed), counted for each connection from that moment.
	// Zero means until it ends.
	DrainTimeout time.Duration
	// Connections bounds the connections of every listener together; nil means none.
	Connections *ConnectionBudget
	// ProxySources are the load balancers whose connections begin with a PROXY header
	// that names the client (--proxy-protocol-from); nil trusts none.
	ProxySources *ProxySources
}

// Server accepts connections on one listener and routes each by its SNI through the
// current Table.
type Server struct {
	ln    net.Listener
	table atomic.Pointer[Table]
	cfg   Config
	log   *slog.Logger
	ctx   context.Context // cancelled when open connections must end now
	// handshaking counts connections in their handshake phase, for MaxHandshakes.
	handshaking atomic.Int64
	cancel      context.CancelFunc
	conns       sync.WaitGroup
	closing     sync.Once

	mu        sync.Mutex            // guards the following fields
	open      map[net.Conn]*tracked // every accepted connection until it ends
	closed    bool
	serveDone chan struct{} // closed when Serve returns; nil if it never ran
	sweep     *time.Timer   // the next end of a bounded drain, if one is due
	sweepAt   time.Time
	// loop relays connections without a goroutine per idle direction (none for an idle
	// passthrough connection, the TLS read's for a terminated one). It starts with Serve
	// and ends with Shutdown; nil where the system has none.
	loop *relay.Loop
	// stopWatch ends the sweep of timeouts; it runs from Serve until closeLoop.
	stopWatch chan struct{}
}

// tracked is an open connection: its route (nil until routed), what closes it, and
// since when its route is no longer served (zero while it is).
type tracked struct {
	route      *Route
	closer     io.Closer
	staleSince time.Time
	since      time.Time // accepted
	nextLook   time.Time // when its timeouts are next worth a look
	// expired and expiredWhy, once set, are the timeout that closed the connection.
	expired, expiredWhy string
}

// NewServer serves ln with table; call Serve to start.
func NewServer(ln net.Listener, table *Table, cfg Config) *Server {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, open: map[net.Conn]*tracked{}}
	s.table.Store(table)
	return s
}

// SetTable switches the routes for new connections; open ones keep theirs, and those
// whose route t no longer has start draining.
func (s *Server) SetTable(t *Table) {
	s.table.Store(t)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.open {
		if o.route != nil && !t.Has(o.route) {
			s.markStaleLocked(o, now)
		}
	}
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Listener is the listening socket, for handing it to a new process.
func (s *Server) Listener() net.Listener { return s.ln }

// Serve accepts connections until Close or Shutdown. Temporary errors, such as running
// out of file descriptors, back off and retry instead of ending the listener.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.serveDone = make(chan struct{})
	defer close(s.serveDone)
	s.stopWatch = make(chan struct{})
	go s.watchTimeouts(s.stopWatch)
	if loop, err := relay.NewLoop(); err == nil {
		s.loop = loop
	} else if !errors.Is(err, errors.ErrUnsupported) {
		s.log.Warn("no relay loop: idle passthrough connections will each hold two goroutines", "listener", s.ln.Addr().String(), "error", err)
	}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		s.conns.Add(1) // taken before Accept so Shutdown cannot miss a connection
		c, err := s.ln.Accept()
		if err != nil {
			s.conns.Done()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = nextBackoff(backoff)
			s.log.Warn("accept failed; retrying", "listener", s.ln.Addr().String(), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-s.ctx.Done():
				return nil
			}
		}
		backoff = 0
		s.track(c)
		go s.handle(c)
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

func (s *Server) track(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open[c] = &tracked{closer: c, since: time.Now()}
}

// untrack forgets c and returns what was tracked of it.
func (s *Server) untrack(c net.Conn) *tracked {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.open[c]
	delete(s.open, c)
	return o
}

func (s *Server) setRoute(c net.Conn, r *Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.open[c]; ok {
		t.route = r
		if !s.table.Load().Has(r) { // the table changed since the lookup
			s.markStaleLocked(t, time.Now())
		}
	}
}

// markStaleLocked starts the drain of o, once.
func (s *Server) markStaleLocked(o *tracked, now time.Time) {
	if o.staleSince.IsZero() {
		o.staleSince = now
		s.sweepByLocked(now.Add(s.cfg.DrainTimeout))
	}
}

// sweepByLocked makes sure a sweep runs at due or earlier, when drains are bounded.
func (s *Server) sweepByLocked(due time.Time) {
	if s.cfg.DrainTimeout <= 0 {
		return
	}
	if s.sweep != nil && !s.sweepAt.After(due) {
		return
	}
	if s.sweep != nil {
		s.sweep.Stop()
	}
	s.sweepAt, s.sweep = due, time.AfterFunc(time.Until(due), s.sweepStale)
}

// sweepStale closes the connections whose drain has lasted DrainTimeout and schedules
// the next sweep for the others.
func (s *Server) sweepStale() {
	now := time.Now()
	s.mu.Lock()
	s.sweep = nil
	var due []io.Closer
	var next time.Time
	for _, o := range s.open {
		if o.staleSince.IsZero() {
			continue
		}
		if at := o.staleSince.Add(s.cfg.DrainTimeout); !at.After(now) {
			due = append(due, o.closer)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		s.sweepByLocked(next)
	}
	s.mu.Unlock()
	closeAll(due)
	if len(due) > 0 {
		s.log.Warn("drain timeout: closed connections of removed or changed endpoints", "address", s.ln.Addr().String(), "closed", len(due))
	}
}

func (s *Server) setCloser(c net.Conn, closer io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.open[c]; ok {
		t.closer = closer
	}
}

// closeAll closes the given connections outside s.mu: a relay's close finishes the
// connection at once, and finishing takes s.mu.
func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// ActiveByEndpoint counts open connections per endpoint name, old routes included, and
// of those the ones draining (their route is no longer served).
func (s *Server) ActiveByEndpoint() (active, draining map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	active, draining = map[string]int{}, map[string]int{}
	for _, o := range s.open {
		if o.route != nil {
			active[o.route.Endpoint]++
			if !o.staleSince.IsZero() {
				draining[o.route.Endpoint]++
			}
		}
	}
	return active, draining
}

// Close stops accepting; open connections carry on.
func (s *Server) Close() error {
	var err error
	s.closing.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		err = s.ln.Close()
	})
	return err
}

// Shutdown stops accepting and waits for open connections to end; when ctx is done first
// it closes them and reports how many it cut.
func (s *Server) Shutdown(ctx context.Context) (cut int, err error) {
	s.Close()
	// The accept loop takes a WaitGroup slot before each Accept: wait for it to end
	// before waiting on the group, or the two race.
	s.mu.Lock()
	serving := s.serveDone
	s.mu.Unlock()
	if serving != nil {
		<-serving
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	defer s.closeLoop()
	select {
	case <-done:
		s.cancel()
		return 0, nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	open := make([]io.Closer, 0, len(s.open))
	for _, o := range s.open {
		open = append(open, o.closer)
	}
	s.mu.Unlock()
	closeAll(open)
	<-done
	return len(open), ctx.Err()
}

// closeLoop ends the relay loop once no connection uses it, and any pending sweep.
func (s *Server) closeLoop() {
	s.mu.Lock()
	loop := s.loop
	s.loop = nil
	if s.stopWatch != nil {
		close(s.stopWatch)
		s.stopWatch = nil
	}
	if s.sweep != nil {
		s.sweep.Stop()
		s.sweep = nil
	}
	s.mu.Unlock()
	if loop != nil {
		loop.Close()
	}
}

func unknownSNI(name string) (code, reason string) {
	if name == "" {
		return "no_sni", "client sent no SNI; tlsd routes by server name and has no default route"
	}
	return "unknown_sni", "unknown SNI " + name
}

func peekFailure(err error, n int) (code, reason string) {
	var ne net.Error
	var he *helloError
	switch {
	case errors.As(err, &he):
		return he.code, he.msg
	case errors.As(err, &ne) && ne.Timeout():
		return "hello_timeout", "no complete ClientHello before the handshake timeout"
	case errors.Is(err, io.EOF) && n == 0:
		return "client_closed", "client closed the connection without sending anything"
	case errors.Is(err, io.EOF):
		return "client_closed", "client closed the connection in the middle of its ClientHello"
	case errors.Is(err, errBusy):
		return "handshakes_full", err.Error()
	}
	return "client_closed", "reading the ClientHello: " + err.Error()
}

func (s *Server) end(info *relay.Info) {
	if s.cfg.OnEnd != nil {
		s.cfg.OnEnd(info)
	}
	relay.LogEnd(s.log, info)
}
