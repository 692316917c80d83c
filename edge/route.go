package edge

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tlsd/tlsd/iprange"
	"github.com/tlsd/tlsd/relay"
)

// Route is what the edge does with connections for one domain.
type Route struct {
	Endpoint string // for logs
	Mode     string // edge | agent | upstream, for logs
	Domain   string // lower case; "*.example.com" matches exactly one label
	// TLS, when set, makes the edge terminate TLS and hand plaintext to Handler; when nil
	// the Handler gets the raw connection with the ClientHello peeked (passthrough, or
	// termination further along).
	TLS     *tls.Config
	Handler relay.Handler
	// Access, when set, is the endpoint's ip_restriction.
	Access *Access
	// Limiter, when set, counts the endpoint's connections (one for every route of the
	// endpoint's name) against Limits; Timeouts close its open ones.
	Limiter  *Limiter
	Limits   LimitSettings
	Timeouts relay.Timeouts
	// Fallback makes the route take the listener's connections whose SNI is missing or
	// names no route.
	Fallback bool
}

// Table maps server names to routes. It is immutable once built, so a listener can swap
// tables atomically while connections keep the route they were accepted with.
type Table struct {
	exact    map[string]*Route
	wildcard map[string]*Route // keyed by the suffix after "*."
	// anyAllowed, when every route has allow ranges, is their union: an address outside
	// it is refused by every endpoint, and so right after accept. Nil otherwise.
	anyAllowed *Access
	fallback   *Route
}

// NewTable indexes routes by domain; a domain may appear once.
func NewTable(routes []*Route) (*Table, error) {
	t := &Table{exact: map[string]*Route{}, wildcard: map[string]*Route{}}
	for _, r := range routes {
		domain := strings.ToLower(r.Domain)
		m, key := t.exact, domain
		if suffix, ok := strings.CutPrefix(domain, "*."); ok {
			m, key = t.wildcard, suffix
		}
		if prev, dup := m[key]; dup {
			return nil, fmt.Errorf("route table: domain %s of endpoint %s is already routed to endpoint %s", r.Domain, r.Endpoint, prev.Endpoint)
		}
		m[key] = r
		if r.Fallback {
			if t.fallback != nil {
				return nil, fmt.Errorf("route table: endpoints %s and %s are both the fallback", t.fallback.Endpoint, r.Endpoint)
			}
			t.fallback = r
		}
	}
	t.anyAllowed = unionOfAllows(routes)
	return t, nil
}

// unionOfAllows is the union of the routes' allow ranges, or nil when some route admits
// addresses beyond its allow ranges (no restriction, or deny ranges alone).
func unionOfAllows(routes []*Route) *Access {
	all := make([]iprange.Set, 0, len(routes))
	for _, r := range routes {
		if r.Access == nil || r.Access.allow.Len() == 0 {
			return nil
		}
		all = append(all, r.Access.allow)
	}
	if len(all) == 0 {
		return nil
	}
	return &Access{allow: iprange.Union(all...)}
}

// RefusesEveryRoute reports whether no route of the table admits addr.
func (t *Table) RefusesEveryRoute(addr netip.Addr) bool {
	return t != nil && t.anyAllowed != nil && !t.anyAllowed.Allows(addr)
}

// Lookup finds the route for a server name: an exact name first, then a wildcard one
// label up, then the fallback route, if any. Names compare case-insensitively.
func (t *Table) Lookup(serverName string) *Route {
	if t == nil {
		return nil
	}
	if r := t.lookup(serverName); r != nil {
		return r
	}
	return t.fallback
}

func (t *Table) lookup(serverName string) *Route {
	if serverName == "" {
		return nil
	}
	name := lowerASCII(strings.TrimSuffix(serverName, "."))
	if r := t.exact[name]; r != nil {
		return r
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return t.wildcard[name[i+1:]]
	}
	return nil
}

// Has reports whether r itself (not an equal copy) is one of the table's routes.
func (t *Table) Has(r *Route) bool {
	if t == nil {
		return false
	}
	domain := lowerASCII(r.Domain)
	if suffix, ok := strings.CutPrefix(domain, "*."); ok {
		return t.wildcard[suffix] == r
	}
	return t.exact[domain] == r
}

// Len is the number of routes.
func (t *Table) Len() int { return len(t.exact) + len(t.wildcard) }

// lowerASCII avoids an allocation for names that are already lower case, the usual case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
