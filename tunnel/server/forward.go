package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/tunnel"
)

// AgentForwarder is the edge's handler for an endpoint served by an agent: it sends the
// connection, TLS bytes or plaintext, through a stream.
type AgentForwarder struct {
	Pool     *AgentPool
	Agent    string
	Endpoint string
	Plain    bool // the edge terminated TLS
	// MoveAfter is how long a stream waits for the agent's answer to the client's
	// ClientHello before the hello is also sent through another session of the pool
	// (0: DefaultMoveAfter). The first session to answer carries the connection.
	MoveAfter time.Duration
}

// DefaultMoveAfter keeps a silent session from holding a client longer than a second,
// while an agent whose upstream is merely slow keeps the stream it has (every attempt
// waits until the handshake deadline; a later one only runs beside it).
const DefaultMoveAfter = 750 * time.Millisecond

// Serve opens a stream to the agent and copies both ways. Where the client's TLS goes
// through the tunnel, the hello is sent on a session of the best rank; when that session
// does not answer within MoveAfter, or fails, it is sent through the next one too, and the
// first to answer carries the connection.
func (f *AgentForwarder) Serve(_ context.Context, c *relay.Conn) {
	c.Info.Upstream = "agent " + f.Agent
	h := f.header(c)
	if len(c.Peeked) == 0 {
		// Plaintext (edge termination) has nothing peeked: its upstream may rightly wait
		// for the client to speak first, so there is no answer to wait for.
		st, _, err := f.Pool.open(f.Agent, h, map[*session]bool{})
		if err != nil {
			f.noAgent(c, 0)
			return
		}
		f.forward(c, st)
		return
	}
	won, tried, err := f.race(c, h)
	if err != nil {
		f.noAgent(c, tried)
		return
	}
	if err := f.passAnswer(c, won); err != nil {
		won.st.Close()
		c.Info.Fail("client_closed", err.Error())
		c.Conn.Close()
		return
	}
	f.forward(c, won.st)
}

func (f *AgentForwarder) header(c *relay.Conn) tunnel.Header {
	h := tunnel.Header{Endpoint: f.Endpoint, Client: c.ClientAddr().String(), Local: c.LocalAddr().String(), SNI: c.Info.SNI, Plain: f.Plain}
	if c.Info.Local != nil {
		h.Local = c.Info.Local.String()
	}
	if f.Plain {
		i := c.Info
		h.TLS = &tunnel.TLS{Version: i.TLSVersion, ALPN: i.ALPN, Resumed: i.Resumed, ClientCert: i.ClientCert, ClientCN: i.ClientCN}
	}
	return h
}

func (f *AgentForwarder) forward(c *relay.Conn, st *agentStream) {
	c.Conn.SetDeadline(time.Time{})
	c.Forward(st)
	if c.Info.Reason != "" && st.Session().IsClosed() {
		// Whichever direction broke first, the cause is the session's end.
		c.Info.Code, c.Info.Reason = "tunnel_broken", sessionDied(st.agent).Error()+" ("+c.Info.Reason+")"
	}
}

// attempt is the client's hello sent through one session.
type attempt struct {
	st      *agentStream
	s       *session
	started time.Time
	first   []byte // the agent's first answer
	err     error  // why there is none
}

// race sends the hello through sessions until one answers; it returns that attempt, or
// an error and how many sessions were tried.
func (f *AgentForwarder) race(c *relay.Conn, h tunnel.Header) (*attempt, int, error) {
	tried := map[*session]bool{}
	done := make(chan *attempt, MaxSessionsPerAgent)
	var running []*attempt
	launch := func() bool {
		if len(tried) >= MaxSessionsPerAgent || pastDeadline(c.Deadline) { // done's room; no time left
			return false
		}
		st, s, err := f.Pool.open(f.Agent, h, tried)
		if err != nil {
			return false
		}
		a := &attempt{st: st, s: s, started: time.Now()}
		running = append(running, a)
		go a.await(c.Peeked, c.Deadline, done)
		return true
	}
	if !launch() {
		return nil, 0, ErrNoAgent
	}
	move := time.NewTimer(cmp.Or(f.MoveAfter, DefaultMoveAfter))
	defer move.Stop()
	for len(running) > 0 {
		select {
		case <-move.C:
			launch()
			move.Reset(cmp.Or(f.MoveAfter, DefaultMoveAfter))
		case a := <-done:
			running = slices.DeleteFunc(running, func(r *attempt) bool { return r == a })
			if a.err == nil {
				f.settle(a, running)
				return a, len(tried), nil
			}
			f.unanswered(a.s, a.err)
			if len(running) == 0 {
				launch()
			}
		}
	}
	return nil, len(tried), errors.New("no session answered")
}

// await writes the hello and waits, until deadline, for the agent's first answer.
func (a *attempt) await(hello []byte, deadline time.Time, done chan<- *attempt) {
	defer func() { done <- a }()
	if _, err := a.st.Write(hello); err != nil {
		a.err = fmt.Errorf("writing to the tunnel: %w", err)
		return
	}
	a.st.SetReadDeadline(deadline)
	buf := make([]byte, 4<<10)
	n, err := a.st.Read(buf)
	a.st.SetReadDeadline(time.Time{})
	if n == 0 {
		a.err = fmt.Errorf("no answer to the ClientHello: %w", err)
		return
	}
	a.first = buf[:n]
}

// settle closes the attempts that lost to won. One started before won had longer and
// still did not answer: its session counts a stream unanswered.
func (f *AgentForwarder) settle(won *attempt, lost []*attempt) {
	won.s.unanswered.Store(0)
	won.s.answered.Store(true)
	for _, a := range lost {
		a.st.Close()
		if a.started.Before(won.started) {
			f.unanswered(a.s, fmt.Errorf("no answer within %s, while another session answered", time.Since(a.started).Round(time.Millisecond)))
		}
	}
}

// passAnswer hands the agent's first answer to the client.
func (f *AgentForwarder) passAnswer(c *relay.Conn, won *attempt) error {
	c.Info.BytesIn += int64(len(c.Peeked))
	if _, err := c.Conn.Write(won.first); err != nil {
		return fmt.Errorf("client went away: %w", err)
	}
	c.Info.BytesOut += int64(len(won.first))
	return nil
}

func (f *AgentForwarder) unanswered(s *session, err error) {
	s.lastUnanswered.Store(time.Now().UnixNano())
	if n := s.unanswered.Add(1); n == unhealthyAfter {
		f.Pool.log.Warn("agent session unhealthy: it left streams unanswered", "agent", s.name, "address", s.addr, "in_a_row", n)
	}
	f.Pool.log.Info("agent did not answer; trying another session", "agent", s.name, "address", s.addr,
		"endpoint", f.Endpoint, "error", err.Error())
}

func (f *AgentForwarder) noAgent(c *relay.Conn, tried int) {
	if tried == 0 {
		c.Info.Fail("no_agent", fmt.Sprintf("no live agent %q serves endpoint %s", f.Agent, f.Endpoint))
	} else {
		c.Info.Fail("agent_silent", fmt.Sprintf("no session of agent %q answered for endpoint %s (%d tried)", f.Agent, f.Endpoint, tried))
	}
	c.Conn.Close()
}

// pastDeadline reports whether d (zero: none) has passed: a session tried then would be
// blamed for the client's own timeout.
func pastDeadline(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }
