package daemon

import (
	"bytes"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/termination"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ticketCache offers the client exactly the session the test chooses and records the
// tickets the server sends.
type ticketCache struct {
	mu      sync.Mutex
	offer   *tls.ClientSessionState
	tickets []*tls.ClientSessionState
}

func (c *ticketCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offer, c.offer != nil
}

func (c *ticketCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tickets = append(c.tickets, cs)
}

// latest is the last session the server gave and the name of the key that sealed its
// ticket (tlsd's tickets start with it).
func (c *ticketCache) latest(t *testing.T) (*tls.ClientSessionState, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tickets) == 0 {
		t.Fatal("the server sent no session ticket")
	}
	cs := c.tickets[len(c.tickets)-1]
	ticket, _, err := cs.ResumptionState()
	must(t, err)
	return cs, ticket[:16]
}

// TestTicketKeysRotate holds every daemon that terminates TLS to the same ticket policy:
// after a rotation a ticket issued before still resumes and the next one is sealed by a
// new key; after the key lifetime the old ticket no longer resumes. The agent daemon once
// set its keys a single time and never rotated them.
func TestTicketKeysRotate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		sni  string
		// start serves the endpoint with clock and returns how to reach it and its roots.
		start func(t *testing.T, clock *fakeClock) (*env, *tls.Config)
	}{
		{"run, edge termination", "edge.test", func(t *testing.T, clock *fakeClock) (*env, *tls.Config) {
			w := newWorld(t, func(o *Options) { o.Now = clock.Now })
			return w.env, &tls.Config{RootCAs: w.internalRoots()}
		}},
		{"run, agent termination", "agent.test", func(t *testing.T, clock *fakeClock) (*env, *tls.Config) {
			w := newWorld(t, func(o *Options) { o.Now = clock.Now })
			return w.env, &tls.Config{RootCAs: pool(w.agentCA)}
		}},
		{"agent daemon, agent termination", "ag.test", func(t *testing.T, clock *fakeClock) (*env, *tls.Config) {
			plain := newEchoServer(t, nil)
			cfg := yamlEndpoint("ag", "ag.test", plain.addr(), "agent", "  certificate: {crt: ag.crt, key: ag.key}\n") + "agent: api-agent\n"
			s := startSplit(t, cfg, nil, func(o *Options) { o.Now = clock.Now })
			return s.env, &tls.Config{RootCAs: pool(s.agentCA)}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{now: time.Now()}
			e, cfg := c.start(t, clock)
			cache := &ticketCache{}
			cfg.ServerName, cfg.ClientSessionCache = c.sni, cache
			connect := func(offer *tls.ClientSessionState) bool {
				cache.mu.Lock()
				cache.offer = offer
				cache.mu.Unlock()
				tc, err := e.dialTLS(cfg)
				must(t, err)
				defer tc.Close()
				// TLS 1.3 tickets follow the handshake: the echo is read after them.
				if got, err := roundTrip(tc, []byte("x")); err != nil || string(got) != "x" {
					t.Fatalf("echo %q, %v", got, err)
				}
				return tc.ConnectionState().DidResume
			}
			if connect(nil) {
				t.Fatal("the first connection claims to resume")
			}
			first, firstKey := cache.latest(t)

			clock.advance(termination.TicketRotation + time.Minute)
			if !connect(first) {
				t.Error("a ticket from before one rotation no longer resumes")
			}
			second, secondKey := cache.latest(t)
			if bytes.Equal(firstKey, secondKey) {
				t.Error("after the rotation interval, new tickets are still sealed by the first key")
			}

			clock.advance((termination.TicketKeyCount - 1) * termination.TicketRotation)
			if connect(first) {
				t.Errorf("a ticket older than its key's lifetime (%d rotations) still resumes", termination.TicketKeyCount)
			}
			if !connect(second) {
				t.Error("a ticket sealed by a key within its lifetime does not resume")
			}
		})
	}
}
