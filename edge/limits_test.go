package edge

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter()
	s := LimitSettings{MaxConnections: 3, MaxPerIP: 2}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Now()
	admit := func(addr netip.Addr, wantCode string) func() {
		t.Helper()
		release, code, reason := l.Admit(s, addr, now)
		if code != wantCode || (release == nil) != (wantCode != "") {
			t.Fatalf("Admit(%s) = %q (%s), want %q", addr, code, reason, wantCode)
		}
		return release
	}
	r1 := admit(a, "")
	admit(a, "")
	admit(a, "max_connections_per_ip")
	admit(b, "")
	admit(b, "max_connections")
	r1()
	r1() // a second release gives back nothing more
	if n := l.Active(); n != 2 {
		t.Fatalf("Active = %d after one release, want 2", n)
	}
	admit(b, "")
	// New settings apply at once to the counts already there.
	s.MaxConnections = 2
	admit(netip.MustParseAddr("192.0.2.3"), "max_connections")
}

// TestRateTableIsBounded: a scan from many addresses keeps at most max buckets, and
// the least recently seen go first.
func TestRateTableIsBounded(t *testing.T) {
	rt := newRateTable(1000)
	now := time.Now()
	keep := netip.MustParseAddr("198.51.100.1")
	for i := range 100_000 {
		if !rt.take(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now, 1, time.Minute) {
			t.Fatalf("address %d refused its first connection", i)
		}
		if i%100 == 0 {
			rt.take(keep, now, 1000, time.Second) // seen often: stays
		}
	}
	if n := rt.order.Len(); n > 1000 || len(rt.byIP) != n {
		t.Fatalf("%d buckets (%d indexed) after 100,000 addresses, want at most 1000", n, len(rt.byIP))
	}
	if rt.byIP[keep] == nil {
		t.Error("an address seen all along was evicted")
	}
	if !rt.take(netip.MustParseAddr("10.0.0.0"), now, 1, time.Minute) {
		t.Error("an evicted address was not given a fresh bucket")
	}
}

func TestRateRefills(t *testing.T) {
	rt := newRateTable(10)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	for i := range 5 {
		if !rt.take(a, now, 5, time.Second) {
			t.Fatalf("token %d of a burst of 5 refused", i+1)
		}
	}
	if rt.take(a, now, 5, time.Second) {
		t.Fatal("a 6th connection in the same instant was admitted")
	}
	if !rt.take(a, now.Add(200*time.Millisecond), 5, time.Second) {
		t.Error("no token after 200 ms at 5/s")
	}
}
