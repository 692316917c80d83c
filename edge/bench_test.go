package edge

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkPeekAndRoute is the per-connection work before any forwarding: parse the
// ClientHello (a post-quantum one, ~1.5 kB) and look its SNI up among 10,000 routes.
func BenchmarkPeekAndRoute(b *testing.B) {
	hello := goHellos(b)["go-default-pq"]
	routes := make([]*Route, 0, 10_001)
	for i := range 10_000 {
		routes = append(routes, &Route{Endpoint: fmt.Sprint(i), Domain: fmt.Sprintf("svc-%d.example.com", i)})
	}
	routes = append(routes, &Route{Endpoint: "pq", Domain: "pq.example.com"})
	table, err := NewTable(routes)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		h, _, err := PeekClientHello(&bytesConn{r: bytes.NewReader(hello)})
		if err != nil || table.Lookup(h.ServerName) == nil {
			b.Fatal("no route", err)
		}
	}
}
