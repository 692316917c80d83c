package iprange

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// reference is what a rule means, read by net/netip alone: the prefix netip makes of s
// (a bare address is a full-length prefix), or false when netip refuses s.
func reference(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen()), err == nil
	}
	p, err := netip.ParsePrefix(s)
	return p, err == nil
}

// refContains is whether rule p admits the client c, as tlsd promises: clients are
// checked by their unmapped address, an IPv4-mapped rule matches the IPv4 clients it
// maps, any other rule matches its own family only.
func refContains(p netip.Prefix, c netip.Addr) bool {
	c = c.Unmap()
	if c.Is4() && p.Addr().Is4In6() {
		return p.Contains(netip.AddrFrom16(c.As16()))
	}
	return p.Contains(c)
}

// refAccepts is whether Parse must accept s: netip reads it, it has no zone, and a
// mapped prefix is at least /96 long.
func refAccepts(s string) bool {
	p, ok := reference(s)
	return ok && !strings.Contains(s, "%") && (!p.Addr().Is4In6() || p.Bits() >= mappedBits)
}

// probe makes a client address of b: 4 bytes IPv4, 16 bytes IPv6 (possibly mapped),
// anything else none.
func probe(b []byte) (netip.Addr, bool) {
	if len(b) != 4 && len(b) != 16 {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(b)
	return a, true
}

// FuzzParse holds Parse and Set to net/netip: Parse accepts exactly what netip reads
// (less zones and short mapped prefixes), what it returns is valid and canonical, and
// the set of it admits a client exactly when netip's prefix does.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::ffff:10.0.0.0/104", "::ffff:127.0.0.1/128", "::ffff:127.0.0.1",
		"::ffff:0:0/95", "::ffff:0:0/96", "fe80::1%eth0", "fe80::%lo/64", "2001:db8::/32", "0.0.0.0/0", "::/0",
		"10.0.0.0/33", "::/129", "1.2.3.4/07", "::ffff:1.2.3.4/100", "::a00:1/128", "", "office"} {
		f.Add(s, []byte{10, 1, 2, 3})
		f.Add(s, netip.MustParseAddr("::ffff:127.0.0.1").AsSlice())
		f.Add(s, netip.MustParseAddr("2001:db8::5").AsSlice())
	}
	f.Fuzz(func(t *testing.T, s string, client []byte) {
		p, err := Parse(s)
		if want := refAccepts(s); (err == nil) != want {
			t.Fatalf("Parse(%q) error %v, want accepted=%v", s, err, want)
		}
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("Parse(%q) = %v: not valid, canonical and unmapped", s, p)
		}
		set, err := NewSet([]netip.Prefix{p})
		if err != nil {
			t.Fatalf("NewSet(Parse(%q)): %v", s, err)
		}
		ref, _ := reference(s)
		c, ok := probe(client)
		if ok && set.Contains(c) != refContains(ref, c) {
			t.Fatalf("rule %q (parsed %v), client %v: Contains=%v, netip says %v", s, p, c, set.Contains(c), refContains(ref, c))
		}
	})
}

// FuzzSet holds a set of many rules to "any of them admits": data is read as a list of
// rules (family byte, address bytes, length byte) and then clients.
func FuzzSet(f *testing.F) {
	f.Add([]byte{4, 10, 0, 0, 0, 8, 4, 10, 0, 1, 0, 24, 6, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0}, []byte{10, 0, 1, 7, 11, 0, 0, 1})
	f.Add([]byte{6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 0, 104, 0}, []byte{127, 0, 0, 1, 128, 0, 0, 1})
	f.Fuzz(func(t *testing.T, rules, clients []byte) {
		var prefixes []netip.Prefix
		var texts []string
		for len(rules) > 0 && len(prefixes) < 64 {
			n := 4
			if rules[0]%2 == 0 {
				n = 16
			}
			if len(rules) < n+2 {
				break
			}
			a, _ := netip.AddrFromSlice(rules[1 : 1+n])
			s := a.String() + "/" + strconv.Itoa(int(rules[1+n]))
			rules = rules[n+2:]
			if p, err := Parse(s); err == nil {
				prefixes, texts = append(prefixes, p), append(texts, s)
			}
		}
		set, err := NewSet(prefixes)
		if err != nil {
			t.Fatalf("NewSet(%v): %v", prefixes, err)
		}
		for i := 0; i+4 <= len(clients); i += 4 {
			c, _ := probe(clients[i : i+4])
			want := false
			for _, s := range texts {
				ref, _ := reference(s)
				want = want || refContains(ref, c)
			}
			if set.Contains(c) != want {
				t.Fatalf("rules %v, client %v: Contains=%v, want %v", texts, c, set.Contains(c), want)
			}
		}
	})
}
