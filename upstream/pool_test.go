package upstream

import (
	"errors"
	"testing"
	"time"
)

func pool(policy string, addrs ...string) *Pool {
	p := &Pool{Policy: policy}
	for _, a := range addrs {
		p.Entries = append(p.Entries, &Entry{Addr: a, Health: &Health{}})
	}
	return p
}

func addrs(es []*Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Addr
	}
	return out
}

func TestCandidates(t *testing.T) {
	now := time.Now()
	rr := pool(RoundRobin, "a", "b", "c")
	for i, want := range []string{"a", "b", "c", "a"} {
		if got := addrs(rr.candidates(now)); got[0] != want || len(got) != 3 {
			t.Errorf("round robin pick %d: %v, want %s first", i, got, want)
		}
	}
	first := pool(First, "a", "b", "c")
	first.Entries[0].Health.Failed(errors.New("refused"), now)
	if got := addrs(first.candidates(now)); len(got) != 2 || got[0] != "b" {
		t.Errorf("first with a down: %v, want b, c", got)
	}
	if got := addrs(first.candidates(now.Add(downFirst))); got[0] != "a" {
		t.Errorf("first once a's back-off is over: %v, want a first again", got)
	}
	least := pool(LeastConnections, "a", "b", "c")
	least.Entries[0].Active.Store(3)
	least.Entries[1].Active.Store(1)
	if got := addrs(least.candidates(now)); got[0] != "c" || got[2] != "a" {
		t.Errorf("least connections: %v, want c first and a last", got)
	}
	lone := pool(RoundRobin, "a")
	lone.Entries[0].Health.Failed(errors.New("refused"), now)
	if got := lone.candidates(now); len(got) != 1 {
		t.Error("a lone upstream with failed dials is not dialed any more")
	}
	lone.Entries[0].Health.Checked(errors.New("refused"), now)
	if got := lone.candidates(now); len(got) != 0 {
		t.Error("a lone upstream whose active check fails is still dialed")
	}
}

// TestBackoff: failed dials in a row keep an entry out longer, up to the bound; one
// success brings it back at once.
func TestBackoff(t *testing.T) {
	h := &Health{}
	now := time.Now()
	var outs []time.Duration
	for range 8 {
		h.Failed(errors.New("refused"), now)
		outs = append(outs, h.Status(now).DownUntil.Sub(now))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if outs[i] != want[i]*time.Second {
			t.Fatalf("back-offs %v, want %v s", outs, want)
		}
	}
	h.Succeeded()
	if !h.Up(now) {
		t.Error("down after a successful dial")
	}
}
