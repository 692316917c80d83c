// Package server is the tunnel's edge side: the listener agents dial, their
// authenticated yamux sessions grouped in pools by agent name, the choice of a session
// for each client connection (ranked, probed, raced), the handler that carries a
// connection through a stream, certificate reports and the hand-over of sessions on an
// upgrade.
package server

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tlsd/tlsd/tunnel"
)

// AgentPool is the tunnel's edge side: the tunnel listener and the live sessions of every agent.
// Agents with the same name form a pool; new streams go round-robin to live sessions.
type AgentPool struct {
	log *slog.Logger
	wg  sync.WaitGroup
	// Window is each stream's receive window (0: tunnel.DefaultWindow); set it before
	// Serve.
	Window uint32
	// ReportEvery is how often each session is asked for the certificates its agent
	// holds (0: DefaultReportEvery); set it before Serve.
	ReportEvery time.Duration

	mu       sync.Mutex // guards the following fields
	sessions map[string][]*session
	next     map[string]int
	ln       net.Listener
	closed   bool
	serves   func(agent string) []string

	streams atomic.Int64 // opened in total
}

type session struct {
	name, addr string
	since      time.Time
	certEnd    time.Time // NotAfter of the client certificate the agent presented
	mux        *yamux.Session
	reportMu   sync.Mutex                   // guards report
	report     []tunnel.ReportedCertificate // what the agent last said it holds
	streams    atomic.Int64
	// unanswered counts the streams in a row the agent did not answer (or answered more
	// slowly than a session tried after it). One makes the session a suspect: it gets
	// streams only after every better session, and only once a probe (a ping) answers.
	// Past unhealthyAfter /status calls it unhealthy, until a probation has passed since
	// the last stream it left unanswered (lastUnanswered).
	unanswered     atomic.Int32
	lastUnanswered atomic.Int64 // unix nanoseconds
	answered       atomic.Bool  // it has answered a stream since it connected
	probing        atomic.Bool  // a probe is in flight
	goneAway       atomic.Bool  // the agent asked for no more streams (it is draining)
}

// unhealthyAfter is how many unanswered streams in a row make a session unhealthy;
// probation is how long after its last failure an unhealthy session counts as healthy
// again in /status.
const (
	unhealthyAfter = 3
	probation      = 30 * time.Second
)

func (s *session) healthy() bool {
	return s.unanswered.Load() < unhealthyAfter || time.Since(time.Unix(0, s.lastUnanswered.Load())) > probation
}

// Ranks of sessions for a new stream, best first.
const (
	rankAnswering = iota // answered its last stream
	rankUntried          // has not carried a stream yet
	rankSuspect          // left its last stream unanswered: probed first
)

// rank is the session's rank for a stream's first attempt (proven says whether it is
// a later one, sent beside a session that has not answered): a first attempt takes
// answering and untried sessions in turn, so a pool shares the load from its start; a
// later one wants a session known to answer.
func (s *session) rank(proven bool) int {
	switch {
	case s.unanswered.Load() > 0:
		return rankSuspect
	case s.answered.Load() || !proven:
		return rankAnswering
	}
	return rankUntried
}

// AgentStatus describes one connected agent session.
type AgentStatus struct {
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
	Streams int64     `json:"streams"` // opened on this session
	// Healthy is false once the agent left several streams in a row unanswered.
	Healthy bool `json:"healthy"`
	// CertificateNotAfter is when the client certificate the session was opened with
	// expires: the agent must have a new one (and reconnect with it) by then.
	CertificateNotAfter time.Time `json:"certificate_not_after"`
}

// NewAgentPool makes an empty pool.
func NewAgentPool(log *slog.Logger) *AgentPool {
	return &AgentPool{log: log, sessions: map[string][]*session{}, next: map[string]int{}}
}

// Serve accepts agent connections on ln until Close. cfg must require and verify
// client certificates: an agent's name is its certificate's identity.
func (p *AgentPool) Serve(ln net.Listener, cfg *tls.Config) error {
	p.mu.Lock()
	p.ln = ln
	closed := p.closed
	p.mu.Unlock()
	if closed { // Close came first
		return ln.Close()
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = nextBackoff(backoff)
			p.log.Warn("tunnel accept failed; retrying", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !p.track() {
			c.Close()
			return nil
		}
		go func() { defer p.wg.Done(); p.handshake(c, cfg) }()
	}
}

// track counts one more connection in the pool's WaitGroup, unless Close has begun: an
// Add that raced Close's Wait would be a misuse of the WaitGroup.
func (p *AgentPool) track() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *AgentPool) handshake(c net.Conn, cfg *tls.Config) {
	tc := tls.Server(c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		p.log.Warn("agent rejected", "address", c.RemoteAddr().String(), "reason", err.Error())
		c.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	leaf := tc.ConnectionState().PeerCertificates[0]
	name := tunnel.Identity(leaf)
	s := &session{name: name, addr: c.RemoteAddr().String(), since: time.Now(), certEnd: leaf.NotAfter}
	if err := p.add(s, tc); err != nil {
		p.log.Warn("agent session refused", "agent", name, "address", s.addr, "reason", err.Error())
		tc.Close()
		return
	}
	mux := s.mux
	p.logConnected(s)
	go p.refuseAgentStreams(s)
	go p.pollReports(s)
	<-mux.CloseChan()
	p.remove(s)
	p.log.Warn("agent disconnected", "agent", name, "address", s.addr, "sessions_left", p.count(name))
}

// SetServes tells the pool which endpoints each agent may serve, for its log.
func (p *AgentPool) SetServes(f func(agent string) []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serves = f
}

// logConnected says who connected and what it may serve here; an agent no endpoint
// names is worth a warning (a typo in its certificate or in the endpoints' agent field).
func (p *AgentPool) logConnected(s *session) {
	p.mu.Lock()
	serves := p.serves
	p.mu.Unlock()
	if serves == nil {
		p.log.Info("agent connected", "agent", s.name, "address", s.addr, "sessions", p.count(s.name))
		return
	}
	eps := serves(s.name)
	if len(eps) == 0 {
		p.log.Warn("agent connected, but no endpoint of this edge names it: it gets no streams", "agent", s.name, "address", s.addr)
		return
	}
	if len(eps) > 20 {
		eps = append(eps[:20:20], fmt.Sprintf("and %d more", len(eps)-20))
	}
	p.log.Info("agent connected", "agent", s.name, "address", s.addr, "sessions", p.count(s.name), "endpoints", strings.Join(eps, ","))
}

// MaxSessionsPerAgent bounds the sessions one agent name may hold: a pool of agents
// for scale and failover needs a few, a leaked credential must not open thousands.
const MaxSessionsPerAgent = 16

// add starts the multiplexed session on tc and joins it to its pool, if the pool has
// room: a refused agent never gets a session to talk to, not even for a ping.
func (p *AgentPool) add(s *session, tc net.Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("the edge is shutting down")
	case len(p.sessions[s.name]) >= MaxSessionsPerAgent:
		return fmt.Errorf("agent %s already has %d sessions, the most one name may hold", s.name, MaxSessionsPerAgent)
	}
	mux, err := yamux.Client(tc, edgeMuxConfig(p.Window))
	if err != nil {
		return fmt.Errorf("start the session: %w", err)
	}
	s.mux = mux
	p.sessions[s.name] = append(p.sessions[s.name], s)
	return nil
}

// refuseAgentStreams ends a session whose agent opens a stream: only the edge opens
// streams, and each stream an agent opened would pin buffers on the edge.
func (p *AgentPool) refuseAgentStreams(s *session) {
	st, err := s.mux.AcceptStream()
	if err != nil {
		return // the session ended
	}
	st.Close()
	p.log.Warn("agent opened a stream, which agents never do; closing its session", "agent", s.name, "address", s.addr)
	s.mux.Close()
}

// edgeMuxConfig is the edge's yamux configuration: no backlog for streams an agent
// opens, so a misbehaving one cannot queue any before its session is closed.
func edgeMuxConfig(window uint32) *yamux.Config {
	c := tunnel.MuxConfig(window)
	c.AcceptBacklog = 1
	return c
}

func (p *AgentPool) remove(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sessions[s.name] = slices.DeleteFunc(p.sessions[s.name], func(x *session) bool { return x == s })
	if len(p.sessions[s.name]) == 0 {
		delete(p.sessions, s.name)
	}
}

func (p *AgentPool) count(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions[name])
}

// pick returns a live session of agent not in skip: of the best rank there is, the next
// in turn. proven: see rank.
func (p *AgentPool) pick(agent string, skip map[*session]bool, proven bool) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best []*session
	bestRank := rankSuspect + 1
	for _, s := range p.sessions[agent] {
		if s.mux.IsClosed() || s.goneAway.Load() || skip[s] {
			continue
		}
		switch r := s.rank(proven); {
		case r < bestRank:
			best, bestRank = append(best[:0], s), r
		case r == bestRank:
			best = append(best, s)
		}
	}
	if len(best) == 0 {
		return nil
	}
	i := p.next[agent] % len(best)
	p.next[agent] = i + 1
	return best[i]
}

// ErrNoAgent means no session of the agent is live.
var ErrNoAgent = errors.New("no live agent")

// probeTimeout bounds the ping a suspect session must answer before it gets a stream.
const probeTimeout = 250 * time.Millisecond

// open starts a stream carrying h on a session of agent not in skip, and adds the
// sessions it tried to skip. A suspect session is probed first; one that does not
// answer the probe in time is passed over.
func (p *AgentPool) open(agent string, h tunnel.Header, skip map[*session]bool) (*agentStream, *session, error) {
	proven := len(skip) > 0 // a later attempt of the stream
	for s := p.pick(agent, skip, proven); s != nil; s = p.pick(agent, skip, proven) {
		skip[s] = true
		if s.rank(proven) == rankSuspect && !s.probe(probeTimeout) {
			continue
		}
		st, err := s.mux.OpenStream()
		if errors.Is(err, yamux.ErrRemoteGoAway) {
			s.goneAway.Store(true) // its agent drains: streams go to its other sessions
			continue
		}
		if err != nil {
			continue // the session just died: its CloseChan removes it
		}
		if err := tunnel.WriteHeader(st, h); err != nil {
			st.Close()
			continue
		}
		s.streams.Add(1)
		p.streams.Add(1)
		return &agentStream{Stream: st, agent: s.name}, s, nil
	}
	return nil, nil, fmt.Errorf("%w %q", ErrNoAgent, agent)
}

// probe pings the session and reports whether it answered within timeout. One probe
// runs at a time per session; a stream that finds one in flight passes the session
// over. The ping goroutine ends with the ping (yamux bounds it by its write timeout)
// or the session.
func (s *session) probe(timeout time.Duration) bool {
	if !s.probing.CompareAndSwap(false, true) {
		return false
	}
	done := make(chan error, 1)
	go func() {
		defer s.probing.Store(false)
		_, err := s.mux.Ping()
		done <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err == nil
	case <-t.C:
		return false
	}
}

// agentStream tells a stream the agent ended from one whose session died: yamux reports
// both as io.EOF, but only the first is the end of the data. The second must reach the
// client as an abort, or a body delimited by the connection's close looks complete.
type agentStream struct {
	*yamux.Stream
	agent string
}

func (s *agentStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if errors.Is(err, io.EOF) && s.Session().IsClosed() {
		return n, sessionDied(s.agent)
	}
	return n, err
}

// sessionDied is a stream cut by the end of its session; metrics count it as
// tunnel_broken.
type sessionDied string

func (a sessionDied) Error() string {
	return "the tunnel session of agent " + string(a) + " ended in the middle of the stream"
}

func (sessionDied) FailureCode() string { return "tunnel_broken" }

// HandOver prepares the hand-over of the edge to a new process: it stops accepting agents
// (the caller keeps a copy of the tunnel socket for the new process, and to Serve again
// if the hand-over fails) and tells every connected agent to open a session to the new
// process, keeping its current one for the streams it carries. It returns the names of
// the agents that were told.
func (p *AgentPool) HandOver() []string {
	p.mu.Lock()
	ln := p.ln
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	return p.drainSessions()
}

// drainSessions sends every session a drain notice and returns the agents' names.
func (p *AgentPool) drainSessions() []string {
	p.mu.Lock()
	var all []*session
	for _, list := range p.sessions {
		all = append(all, list...)
	}
	p.mu.Unlock()
	names := map[string]bool{}
	for _, s := range all {
		if st, err := s.mux.OpenStream(); err == nil {
			tunnel.WriteHeader(st, tunnel.Header{Drain: true})
			st.Close()
			names[s.name] = true
		}
	}
	return slices.Sorted(maps.Keys(names))
}

// WaitForAgents waits until every agent of names has a session, or timeout passes; it
// returns those still missing.
func (p *AgentPool) WaitForAgents(names []string, timeout time.Duration) []string {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		missing := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return p.count(n) > 0 })
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
	}
}

// Agents lists the connected sessions.
func (p *AgentPool) Agents() []AgentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []AgentStatus
	for _, list := range p.sessions {
		for _, s := range list {
			out = append(out, AgentStatus{Name: s.name, Address: s.addr, Since: s.since, Streams: s.streams.Load(), Healthy: s.healthy(),
				CertificateNotAfter: s.certEnd})
		}
	}
	slices.SortFunc(out, func(a, b AgentStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Address, b.Address))
	})
	return out
}

// Streams is the number of streams opened so far.
func (p *AgentPool) Streams() int64 { return p.streams.Load() }

// Close stops accepting agents and closes every session (and so every stream). It may be
// called on a nil pool (no tunnel).
func (p *AgentPool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
	}
	var all []*session
	for _, list := range p.sessions {
		all = append(all, list...)
	}
	p.mu.Unlock()
	for _, s := range all {
		s.mux.Close()
	}
	p.wg.Wait()
}

// nextBackoff is the wait after a failed accept: 5 ms doubling to 1 s, as the client
// listeners'.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}
