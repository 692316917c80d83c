package iprange

import (
	"fmt"
	"net/netip"
	"slices"
)

// Set is a set of addresses held as disjoint, sorted ranges (IPv4 and IPv6 apart: they
// never compare equal), so a lookup among thousands of prefixes is a binary search. The
// zero Set is empty.
type Set struct{ rs []addrRange }

type addrRange struct{ first, last netip.Addr }

// NewSet makes the set of prefixes. An invalid prefix, or one whose address is
// IPv4-mapped (rules are matched against unmapped addresses, so it could never match), is
// an error: a set never silently loses a member.
func NewSet(prefixes []netip.Prefix) (Set, error) {
	rs := make([]addrRange, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Is4In6() {
			return Set{}, fmt.Errorf("address rule %s is not usable (an invalid or IPv4-mapped prefix): read rules with iprange.Parse", p)
		}
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	return Set{rs: merge(rs)}, nil
}

// Union is the set of every address in any of sets.
func Union(sets ...Set) Set {
	var rs []addrRange
	for _, s := range sets {
		rs = append(rs, s.rs...)
	}
	return Set{rs: merge(rs)}
}

// Len is the number of disjoint ranges the set holds.
func (s Set) Len() int { return len(s.rs) }

// Contains reports whether addr (unmapped first) is in the set.
func (s Set) Contains(addr netip.Addr) bool { return s.index(addr.Unmap()) >= 0 }

// index is the position of the range holding a, or -1.
func (s Set) index(a netip.Addr) int {
	i, found := slices.BinarySearchFunc(s.rs, a, func(r addrRange, a netip.Addr) int {
		if r.last.Less(a) {
			return -1
		}
		if a.Less(r.first) {
			return 1
		}
		return 0
	})
	if !found {
		return -1
	}
	return i
}

// Covers reports whether every address of p is in the set.
func (s Set) Covers(p netip.Prefix) bool {
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	first, last := p.Addr(), lastAddr(p)
	i := s.index(first)
	return i >= 0 && !s.rs[i].last.Less(last)
}

// merge sorts rs and joins the ranges that overlap or touch.
func merge(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(x, y addrRange) int { return x.first.Compare(y.first) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].last.Is4() == r.first.Is4() && !out[n-1].last.Less(r.first.Prev()) {
			if out[n-1].last.Less(r.last) {
				out[n-1].last = r.last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
