package edge

import (
	"net"
	"net/netip"
	"slices"
)

// Access is an endpoint's ip_restriction: with any allow range a client must be in one
// and in no deny range; with deny ranges alone, everything not denied passes. Lookups
// are binary searches over merged ranges, so thousands of prefixes cost a few compares.
type Access struct {
	allow, deny ranges
}

// NewAccess makes the rules of allow and deny prefixes.
func NewAccess(allow, deny []netip.Prefix) *Access {
	return &Access{allow: newRanges(allow), deny: newRanges(deny)}
}

// Allows reports whether the rules admit addr.
func (a *Access) Allows(addr netip.Addr) bool {
	if a == nil {
		return true
	}
	addr = addr.Unmap()
	if a.deny.contains(addr) {
		return false
	}
	return len(a.allow) == 0 || a.allow.contains(addr)
}

// clientAddr is the address a connection's rules are checked against: the TCP peer's.
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// ranges are disjoint, sorted address ranges (IPv4 and IPv6 apart: they never compare
// equal).
type ranges []addrRange

type addrRange struct{ first, last netip.Addr }

func newRanges(prefixes []netip.Prefix) ranges {
	rs := make(ranges, 0, len(prefixes))
	for _, p := range prefixes {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	return mergeRanges(rs)
}

// mergeRanges sorts rs and joins the ones that overlap or touch.
func mergeRanges(rs ranges) ranges {
	rs = slices.Clone(rs)
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

func (rs ranges) contains(a netip.Addr) bool {
	i, _ := slices.BinarySearchFunc(rs, a, func(r addrRange, a netip.Addr) int {
		if r.last.Less(a) {
			return -1
		}
		if a.Less(r.first) {
			return 1
		}
		return 0
	})
	return i < len(rs) && !a.Less(rs[i].first) && !rs[i].last.Less(a)
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
