package edge

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestAccess(t *testing.T) {
	cases := []struct {
		name         string
		allow, deny  []string
		admit, deny2 []string // addresses admitted, refused
	}{
		{"allow with a hole", []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"}, []string{"10.9.0.0/16"},
			[]string{"10.0.0.1", "10.8.255.255", "10.10.0.0", "2001:db8::1", "192.0.2.7", "::ffff:10.1.2.3"},
			[]string{"10.9.0.0", "10.9.255.255", "11.0.0.0", "9.255.255.255", "192.0.2.8", "2001:db9::", "127.0.0.1"}},
		{"deny only", nil, []string{"192.0.2.0/24"}, []string{"198.51.100.1", "::1"}, []string{"192.0.2.1"}},
		{"adjacent ranges merge", []string{"10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/24"}, nil,
			[]string{"10.0.0.0", "10.0.0.200", "10.0.1.255"}, []string{"10.0.2.0", "9.255.255.255"}},
		{"nested ranges", []string{"10.0.0.0/8", "10.1.0.0/16"}, nil, []string{"10.200.0.1", "10.1.2.3"}, []string{"11.0.0.1"}},
		{"everything", []string{"0.0.0.0/0", "::/0"}, nil, []string{"1.2.3.4", "ff02::1"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := NewAccess(prefixes(t, c.allow...), prefixes(t, c.deny...))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.admit {
				if !a.Allows(netip.MustParseAddr(s)) {
					t.Errorf("%s refused", s)
				}
			}
			for _, s := range c.deny2 {
				if a.Allows(netip.MustParseAddr(s)) {
					t.Errorf("%s admitted", s)
				}
			}
		})
	}
	var open *Access
	if !open.Allows(netip.MustParseAddr("192.0.2.1")) {
		t.Error("no restriction refused a client")
	}
}

// TestAccessRefusesUnusablePrefixes: a rule that cannot be used is an error, never a
// rule left out (an allow list without its only entry would admit everyone).
func TestAccessRefusesUnusablePrefixes(t *testing.T) {
	good := prefixes(t, "10.0.0.0/8")
	for _, bad := range []netip.Prefix{
		{},
		netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 104),
		netip.MustParsePrefix("::ffff:10.0.0.0/104"),
	} {
		if _, err := NewAccess(append(good, bad), nil); err == nil {
			t.Errorf("allow %v: no error", bad)
		}
		if _, err := NewAccess(nil, append(good, bad)); err == nil {
			t.Errorf("deny %v: no error", bad)
		}
		if _, err := NewProxySources(append(good, bad)); err == nil {
			t.Errorf("proxy sources %v: no error", bad)
		}
	}
}

// BenchmarkAccess is one lookup among n allowed /24s (and as many /32 holes).
func BenchmarkAccess(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			var allow, deny []netip.Prefix
			for range n {
				a := netip.AddrFrom4([4]byte{byte(r.IntN(224)), byte(r.IntN(256)), byte(r.IntN(256)), 0})
				allow = append(allow, netip.PrefixFrom(a, 24))
				deny = append(deny, netip.PrefixFrom(a.Next(), 32))
			}
			a, err := NewAccess(allow, deny)
			if err != nil {
				b.Fatal(err)
			}
			addrs := make([]netip.Addr, 1024)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{byte(r.IntN(224)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.Allows(addrs[i%len(addrs)])
				i++
			}
		})
	}
}
