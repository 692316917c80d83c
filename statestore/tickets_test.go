package statestore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testredis"
	"github.com/tlsd/tlsd/termination"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestTicketRotationAcrossEdges: two edges share the secrets; one rotates a rotation
// later, publishing the successor ahead so the other holds it before it seals; old
// secrets retire after TicketKeyCount rotations; an outage keeps what is held.
func TestTicketRotationAcrossEdges(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	clk := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	poll := 10 * time.Second
	a := open(t, Options{URL: r.URL()}).Tickets(clk.now, poll)
	b := open(t, Options{URL: r.URL()}).Tickets(clk.now, poll)
	ctx := context.Background()
	sync2 := func() {
		t.Helper()
		for _, x := range []*Tickets{a, b} {
			if err := x.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	sync2()
	first := a.TicketSecrets()
	if len(first) != 1 || !first[0].ActiveAt.Equal(clk.now()) || b.TicketSecrets()[0].Name != first[0].Name {
		t.Fatalf("first secret: a %v, b %v", first, b.TicketSecrets())
	}
	clk.add(termination.TicketRotation - 2*poll) // the successor is due: published ahead
	sync2()
	got := b.TicketSecrets()
	if len(got) != 2 || got[1].Name != first[0].Name || !got[0].ActiveAt.Equal(first[0].ActiveAt.Add(termination.TicketRotation)) {
		t.Fatalf("after one rotation: %+v", got)
	}
	if a.TicketSecrets()[0].Name != got[0].Name {
		t.Error("the edges disagree on the newest secret")
	}
	for range 2 * termination.TicketKeyCount {
		clk.add(termination.TicketRotation)
		sync2()
	}
	if n := len(a.TicketSecrets()); n > termination.TicketKeyCount+1 {
		t.Errorf("%d secrets kept; old ones must retire", n)
	}
	held := a.TicketSecrets()
	r.Stop()
	clk.add(termination.TicketRotation)
	if err := a.Sync(ctx); err == nil {
		t.Error("Sync with the store stopped did not fail")
	}
	if len(a.TicketSecrets()) != len(held) || a.TicketSecrets()[0].Name != held[0].Name {
		t.Error("an outage dropped the secrets held")
	}
}
