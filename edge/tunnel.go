package edge

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/tunnel"
)

// AgentPool is the tunnel's edge side: the tunnel listener and the live sessions of every agent.
// Agents with the same name form a pool; new streams go round-robin to live sessions.
type AgentPool struct {
	log *slog.Logger
	wg  sync.WaitGroup

	mu       sync.Mutex // guards the following fields
	sessions map[string][]*session
	next     map[string]int
	ln       net.Listener
	closed   bool

	streams atomic.Int64 // opened in total
}

type session struct {
	name, addr string
	since      time.Time
	mux        *yamux.Session
	streams    atomic.Int64
}

// AgentStatus describes one connected agent session.
type AgentStatus struct {
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
	Streams int64     `json:"streams"` // opened on this session
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
	p.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = nextBackoff(backoff) // the same as the client listeners'
			p.log.Warn("tunnel accept failed; retrying", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.handshake(c, cfg) }()
	}
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
	name := tunnel.Identity(tc.ConnectionState().PeerCertificates[0])
	mux, err := yamux.Client(tc, edgeMuxConfig())
	if err != nil {
		tc.Close()
		return
	}
	s := &session{name: name, addr: c.RemoteAddr().String(), since: time.Now(), mux: mux}
	if err := p.add(s); err != nil {
		p.log.Warn("agent session refused", "agent", name, "address", s.addr, "reason", err.Error())
		mux.Close()
		return
	}
	p.log.Info("agent connected", "agent", name, "address", s.addr, "sessions", p.count(name))
	go p.refuseAgentStreams(s)
	<-mux.CloseChan()
	p.remove(s)
	p.log.Warn("agent disconnected", "agent", name, "address", s.addr, "sessions_left", p.count(name))
}

// MaxSessionsPerAgent bounds the sessions one agent name may hold: a pool of agents
// for scale and failover needs a few, a leaked credential must not open thousands.
const MaxSessionsPerAgent = 16

func (p *AgentPool) add(s *session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("the edge is shutting down")
	case len(p.sessions[s.name]) >= MaxSessionsPerAgent:
		return fmt.Errorf("agent %s already has %d sessions, the most one name may hold", s.name, MaxSessionsPerAgent)
	}
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
func edgeMuxConfig() *yamux.Config {
	c := tunnel.MuxConfig()
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

// pick returns the next live session of agent, round-robin.
func (p *AgentPool) pick(agent string) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.sessions[agent]
	for range live {
		i := p.next[agent] % len(live)
		p.next[agent] = i + 1
		if s := live[i]; !s.mux.IsClosed() {
			return s
		}
	}
	return nil
}

// ErrNoAgent means no session of the agent is live.
var ErrNoAgent = errors.New("no live agent")

// Open starts a stream to agent carrying h, trying each live session once.
func (p *AgentPool) Open(agent string, h tunnel.Header) (net.Conn, error) {
	for range max(1, p.count(agent)) {
		s := p.pick(agent)
		if s == nil {
			break
		}
		st, err := s.mux.OpenStream()
		if err != nil {
			continue // the session just died: its CloseChan removes it
		}
		if err := tunnel.WriteHeader(st, h); err != nil {
			st.Close()
			continue
		}
		s.streams.Add(1)
		p.streams.Add(1)
		return &agentStream{Stream: st, agent: s.name}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrNoAgent, agent)
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

// Agents lists the connected sessions.
func (p *AgentPool) Agents() []AgentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []AgentStatus
	for _, list := range p.sessions {
		for _, s := range list {
			out = append(out, AgentStatus{Name: s.name, Address: s.addr, Since: s.since, Streams: s.streams.Load()})
		}
	}
	slices.SortFunc(out, func(a, b AgentStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Address, b.Address))
	})
	return out
}

// Streams is the number of streams opened so far.
func (p *AgentPool) Streams() int64 { return p.streams.Load() }

// Close stops accepting agents and closes every session (and so every stream).
func (p *AgentPool) Close() {
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

// AgentForwarder is the edge's handler for an endpoint served by an agent: it sends the
// connection, TLS bytes or plaintext, through a stream.
type AgentForwarder struct {
	Pool     *AgentPool
	Agent    string
	Endpoint string
	Plain    bool // the edge terminated TLS
}

// Serve opens a stream to the agent and copies both ways.
func (f *AgentForwarder) Serve(_ context.Context, c *relay.Conn) {
	c.Info.Upstream = "agent " + f.Agent
	h := tunnel.Header{Endpoint: f.Endpoint, Client: c.RemoteAddr().String(), Local: c.LocalAddr().String(), Plain: f.Plain}
	if c.Hello != nil {
		h.SNI = c.Hello.ServerName
	}
	st, err := f.Pool.Open(f.Agent, h)
	if err != nil {
		c.Info.Fail("no_agent", fmt.Sprintf("no live agent %q serves endpoint %s", f.Agent, f.Endpoint))
		c.Conn.Close()
		return
	}
	if len(c.Peeked) > 0 {
		if _, err := st.Write(c.Peeked); err != nil {
			c.Info.Fail("tunnel_broken", "writing to the tunnel: "+err.Error())
			st.Close()
			c.Conn.Close()
			return
		}
		c.Info.BytesIn += int64(len(c.Peeked))
	}
	c.Conn.SetDeadline(time.Time{})
	c.Forward(st)
}
