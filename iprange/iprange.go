// Package iprange reads the address rules of tlsd's configuration and flags (CIDR
// prefixes and bare addresses) and answers "is this client in the set" over merged
// ranges. It is the one parser of such rules: the configuration loader, the flags and the
// data plane all go through it, so what validate accepts is exactly what is enforced.
package iprange

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// mappedBits is the length of the ::ffff:0:0/96 prefix under which IPv6 writes IPv4
// addresses.
const mappedBits = 96

// Parse reads a rule: a CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a bare address (a
// /32 or /128). The result is canonical (masked) and always valid. IPv4-mapped forms are
// IPv4 rules: "::ffff:10.0.0.0/104" is 10.0.0.0/8 and "::ffff:127.0.0.1" is 127.0.0.1/32,
// because tlsd checks clients by their unmapped address. Refused, with the reason: a
// mapped prefix shorter than /96 (it spans IPv6 space beyond IPv4), a zone ("%eth0"), and
// anything netip does not read.
func Parse(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone: a zone names an interface of one host and cannot be matched against clients; leave out the %%-suffix", s)
	}
	p, err := parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		if p, err = unmapPrefix(s, p); err != nil {
			return netip.Prefix{}, err
		}
	}
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%q does not make a usable prefix", s)
	}
	return p.Masked(), nil
}

// parsePrefix reads s as netip does: a prefix when it has a slash, else an address.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix: %s", s, strings.TrimPrefix(err.Error(), fmt.Sprintf("netip.ParsePrefix(%q): ", s)))
	}
	return p, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96).
func unmapPrefix(s string, p netip.Prefix) (netip.Prefix, error) {
	if p.Bits() < mappedBits {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped prefix shorter than /96: it covers IPv6 addresses beyond IPv4 as well; write the IPv4 range (e.g. 10.0.0.0/8) and any IPv6 range apart", s)
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-mappedBits), nil
}

// ParseList reads every rule of list; the error joins every entry that failed, so none
// is silently dropped.
func ParseList(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	var errs []error
	for _, s := range list {
		p, err := Parse(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}
