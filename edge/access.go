package edge

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/tlsd/tlsd/iprange"
)

// Access is an endpoint's ip_restriction: with any allow range a client must be in one
// and in no deny range; with deny ranges alone, everything not denied passes. Lookups
// are binary searches over merged ranges, so thousands of prefixes cost a few compares.
type Access struct {
	allow, deny iprange.Set
}

// NewAccess makes the rules of allow and deny prefixes. A prefix that cannot be used is
// an error, never a rule left out: an allow list that lost its only entry would admit
// everyone.
func NewAccess(allow, deny []netip.Prefix) (*Access, error) {
	a, err := iprange.NewSet(allow)
	if err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	d, err := iprange.NewSet(deny)
	if err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	return &Access{allow: a, deny: d}, nil
}

// Allows reports whether the rules admit addr.
func (a *Access) Allows(addr netip.Addr) bool {
	if a == nil {
		return true
	}
	if a.deny.Contains(addr) {
		return false
	}
	return a.allow.Len() == 0 || a.allow.Contains(addr)
}

// clientAddr is the address a connection's rules are checked against: the TCP peer's.
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}
