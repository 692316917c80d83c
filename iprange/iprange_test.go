package iprange

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in, want string // want "" = refused, with wantErr in the message
		wantErr  string
	}{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"::/0", "::/0", ""},
		// IPv4-mapped forms are IPv4 rules.
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"::ffff:127.0.0.1/128", "127.0.0.1/32", ""},
		{"::ffff:127.0.0.1", "127.0.0.1/32", ""},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0", ""},
		{"::ffff:10.9.8.7/120", "10.9.8.0/24", ""},
		{"::ffff:0a00:0000/104", "10.0.0.0/8", ""},
		// Refused.
		{"::ffff:10.0.0.0/95", "", "shorter than /96"},
		{"::ffff:0:0/80", "", "shorter than /96"},
		{"fe80::1%eth0", "", "zone"},
		{"fe80::%eth0/64", "", "zone"},
		{"10.0.0.0/33", "", "prefix length out of range"},
		{"2001:db8::/129", "", "prefix length out of range"},
		{"10.0.0.0/-1", "", "not a CIDR prefix"},
		{"10.0.0/8", "", "not a CIDR prefix"},
		{"office", "", "neither a CIDR prefix nor an IP address"},
		{"", "", "neither a CIDR prefix nor an IP address"},
		{"10.0.0.0/8 ", "", "not a CIDR prefix"},
	}
	for _, c := range cases {
		p, err := Parse(c.in)
		switch {
		case c.want == "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("Parse(%q) = %v, %v; want an error saying %q", c.in, p, err, c.wantErr)
		case c.want != "" && (err != nil || p.String() != c.want):
			t.Errorf("Parse(%q) = %v, %v; want %s", c.in, p, err, c.want)
		}
	}
}

func TestParseListKeepsEveryError(t *testing.T) {
	got, err := ParseList([]string{"10.0.0.0/8", "::ffff:0:0/80", "office", "192.0.2.1"})
	if err == nil || !strings.Contains(err.Error(), "::ffff:0:0/80") || !strings.Contains(err.Error(), "office") {
		t.Errorf("error %v: want both bad entries named", err)
	}
	if len(got) != 2 {
		t.Errorf("parsed %v, want the two good entries", got)
	}
}

func TestSet(t *testing.T) {
	set := mustSet(t, "10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/24", "2001:db8::/32", "192.0.2.7/32")
	if set.Len() != 3 {
		t.Errorf("%d ranges, want 3 (adjacent ones merged)", set.Len())
	}
	for addr, want := range map[string]bool{
		"10.0.0.0": true, "10.0.1.255": true, "10.0.2.0": false, "9.255.255.255": false,
		"::ffff:10.0.0.9": true, "2001:db8::1": true, "2001:db9::": false, "192.0.2.7": true, "192.0.2.8": false,
		"::a00:1": false, // IPv4-compatible (not mapped): an IPv6 address
	} {
		if got := set.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	for p, want := range map[string]bool{"10.0.0.0/23": true, "10.0.0.0/22": false, "2001:db8:1::/48": true, "192.0.2.6/31": false} {
		if got := set.Covers(netip.MustParsePrefix(p)); got != want {
			t.Errorf("Covers(%s) = %v, want %v", p, got, want)
		}
	}
	var empty Set
	if empty.Contains(netip.MustParseAddr("10.0.0.1")) || empty.Covers(netip.MustParsePrefix("10.0.0.1/32")) {
		t.Error("the empty set holds something")
	}
}

func TestNewSetRefusesUnusablePrefixes(t *testing.T) {
	for _, p := range []netip.Prefix{
		{},
		netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 104),
		netip.MustParsePrefix("::ffff:10.0.0.0/104"),
	} {
		if _, err := NewSet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), p}); err == nil {
			t.Errorf("NewSet with %#v: no error", p)
		}
	}
}

func mustSet(t testing.TB, rules ...string) Set {
	t.Helper()
	ps, err := ParseList(rules)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(ps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
