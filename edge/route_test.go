package edge

import (
	"fmt"
	"strings"
	"testing"
)

func TestTableLookup(t *testing.T) {
	table, err := NewTable([]*Route{
		{Endpoint: "exact", Domain: "billing.example.com"},
		{Endpoint: "wild", Domain: "*.example.com"},
		{Endpoint: "deep", Domain: "*.eu.example.com"},
		{Endpoint: "upper", Domain: "API.Example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"billing.example.com":  "exact", // exact beats wildcard
		"BILLING.example.COM":  "exact", // case-insensitive
		"billing.example.com.": "exact", // trailing dot
		"shop.example.com":     "wild",
		"api.example.com":      "upper",
		"a.eu.example.com":     "deep",
		"a.b.example.com":      "", // one label only
		"example.com":          "", // the wildcard does not match its own parent
		"":                     "", // no SNI, no route
		"other.org":            "",
		".example.com":         "",
	}
	for sni, want := range cases {
		got := ""
		if r := table.Lookup(sni); r != nil {
			got = r.Endpoint
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", sni, got, want)
		}
	}
	if table.Len() != 4 {
		t.Errorf("Len = %d", table.Len())
	}
}

func TestTableRejectsDuplicates(t *testing.T) {
	_, err := NewTable([]*Route{{Endpoint: "a", Domain: "x.example.com"}, {Endpoint: "b", Domain: "X.example.com"}})
	if err == nil || !strings.Contains(err.Error(), "already routed to endpoint a") {
		t.Errorf("err = %v", err)
	}
}

// BenchmarkLookup compares one route with 10,000: the lookup must not grow with the table.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		routes := make([]*Route, 0, n+1)
		for i := range n {
			routes = append(routes, &Route{Endpoint: fmt.Sprint(i), Domain: fmt.Sprintf("svc-%d.example.com", i)})
		}
		routes = append(routes, &Route{Endpoint: "w", Domain: "*.tenants.example.com"})
		table, err := NewTable(routes)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("routes=%d/exact", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if table.Lookup("svc-0.example.com") == nil {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("routes=%d/wildcard", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if table.Lookup("acme.tenants.example.com") == nil {
					b.Fatal("miss")
				}
			}
		})
	}
}
