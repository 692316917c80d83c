package upstream

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPolicies: each policy's first choice over many connections, with every entry up
// and with one down, as a table.
func TestPolicies(t *testing.T) {
	now := time.Now()
	cases := []struct {
		policy string
		down   []int          // entries whose last dial failed
		active []int64        // open connections per entry
		picks  int            // connections to place
		want   map[string]int // how many times each entry comes first
	}{
		{RoundRobin, nil, nil, 6, map[string]int{"a": 2, "b": 2, "c": 2}},
		{"", nil, nil, 3, map[string]int{"a": 1, "b": 1, "c": 1}}, // round robin by default
		{RoundRobin, []int{1}, nil, 6, map[string]int{"a": 3, "c": 3}},
		{First, nil, nil, 4, map[string]int{"a": 4}},
		{First, []int{0}, nil, 4, map[string]int{"b": 4}},
		{First, []int{0, 1}, nil, 2, map[string]int{"c": 2}},
		{LeastConnections, nil, []int64{2, 0, 1}, 3, map[string]int{"b": 3}},
		{LeastConnections, nil, []int64{1, 1, 1}, 3, map[string]int{"a": 1, "b": 1, "c": 1}}, // ties take turns
		{LeastConnections, []int{1}, []int64{2, 0, 1}, 2, map[string]int{"c": 2}},
	}
	for _, c := range cases {
		p := pool(c.policy, "a", "b", "c")
		for _, i := range c.down {
			p.Entries[i].Health.Failed(errors.New("refused"), now)
		}
		for i, n := range c.active {
			p.Entries[i].Active.Store(n)
		}
		got := map[string]int{}
		for range c.picks {
			got[p.candidates(now)[0].Addr]++
		}
		if !sameCounts(got, c.want) {
			t.Errorf("%s, down %v, active %v: first choices %v, want %v", c.policy, c.down, c.active, got, c.want)
		}
	}
}

// TestRandomReachesEveryEntry: random placement uses every entry and keeps the others as
// fallbacks.
func TestRandomReachesEveryEntry(t *testing.T) {
	p := pool(Random, "a", "b", "c")
	got := map[string]int{}
	for range 300 {
		cands := p.candidates(time.Now())
		if len(cands) != 3 {
			t.Fatalf("%d candidates, want all 3", len(cands))
		}
		got[cands[0].Addr]++
	}
	for _, a := range []string{"a", "b", "c"} {
		if got[a] < 50 { // 100 expected; below 50 has a chance under 1e-8
			t.Errorf("random chose %s %d times in 300", a, got[a])
		}
	}
}

// TestDialFailsOver: a refused entry is marked down and the next one serves; with every
// entry refusing, the error names them and the pool refuses at once until a back-off ends.
func TestDialFailsOver(t *testing.T) {
	live := listen(t)
	dead := deadAddr(t)
	p := pool(First, dead, live.Addr().String())
	c, e, err := p.dial(context.Background(), time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if e.Addr != live.Addr().String() || p.Entries[0].Health.Up(time.Now()) {
		t.Errorf("served by %s; the refused entry up: %v", e.Addr, p.Entries[0].Health.Up(time.Now()))
	}
	all := pool(RoundRobin, dead, deadAddr(t))
	_, _, err = all.dial(context.Background(), time.Now().Add(5*time.Second))
	var f *failure
	if !errors.As(err, &f) || f.code != "upstreams_down" || !strings.Contains(err.Error(), dead) {
		t.Fatalf("every entry refused: %v", err)
	}
	if _, _, err = all.dial(context.Background(), time.Now().Add(5*time.Second)); err == nil || !strings.Contains(err.Error(), "every upstream is down") {
		t.Errorf("right after: %v, want a refusal without dialing", err)
	}
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// listen is a loopback listener that accepts and closes, until the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEach(t, ln, func(c net.Conn) { c.Close() })
	return ln
}

// serveEach hands every connection ln accepts to handle, until the test ends.
func serveEach(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// deadAddr is a loopback address that refuses connections: a listener's, closed.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
