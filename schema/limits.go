package schema

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultHalfClose is how long a half-closed connection may stay silent when the
// endpoint sets no timeouts.half_close: a minute covers an upstream that answers a
// request after its client finished sending, and still reaps abandoned halves.
const DefaultHalfClose = time.Minute

// ParseRate reads a rate_per_ip: "N/s" or "N/m", N at least 1.
func ParseRate(s string) (n int, per time.Duration, err error) {
	count, unit, ok := strings.Cut(s, "/")
	per = map[string]time.Duration{"s": time.Second, "m": time.Minute}[unit]
	n, cerr := strconv.Atoi(count)
	switch {
	case !ok || per == 0:
		return 0, 0, fmt.Errorf("%q is not a rate: write N/s or N/m, e.g. \"20/s\"", s)
	case cerr != nil || n < 1 || strings.HasPrefix(count, "+"):
		return 0, 0, fmt.Errorf("%q is not a rate: %q is not a whole number of at least 1", s, count)
	}
	return n, per, nil
}

// Duration reads a timeouts value written by Load (canonical, positive); "" is zero.
func Duration(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// checkLimits checks limits and timeouts, and rewrites the durations canonically.
func (l *loader) checkLimits(ed *endpointDoc) {
	d, ep := ed.doc, ed.ep
	if lim := ep.Limits; lim != nil {
		if lim.RatePerIP != "" {
			if _, _, err := ParseRate(lim.RatePerIP); err != nil {
				l.add(d, "/limits/rate_per_ip", SeverityError, "invalid-rate", "rate_per_ip %v", err)
			}
		}
		if lim.MaxConnections > 0 && lim.MaxConnectionsPerIP > lim.MaxConnections {
			l.add(d, "/limits/max_connections_per_ip", SeverityWarning, "per-ip-above-max",
				"max_connections_per_ip (%d) is above max_connections (%d): one client can take them all", lim.MaxConnectionsPerIP, lim.MaxConnections)
		}
	}
	if t := ep.Timeouts; t != nil {
		t.Idle = l.duration(d, "/timeouts/idle", t.Idle)
		t.MaxLifetime = l.duration(d, "/timeouts/max_lifetime", t.MaxLifetime)
		t.HalfClose = l.duration(d, "/timeouts/half_close", t.HalfClose)
		if t.Idle != "" && t.HalfClose != "" && Duration(t.HalfClose) > Duration(t.Idle) {
			l.add(d, "/timeouts/half_close", SeverityWarning, "half-close-above-idle",
				"half_close (%s) is longer than idle (%s): the idle timeout ends a silent half-closed connection first", t.HalfClose, t.Idle)
		}
	}
}

// duration checks the duration at path and returns it canonical ("" if it is not valid).
func (l *loader) duration(d *document, path, s string) string {
	if s == "" {
		return ""
	}
	field := toDotted(path)
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		l.add(d, path, SeverityError, "invalid-duration", "%s %q is not a duration: write e.g. \"90s\", \"5m\" or \"24h\"", field, s)
		return ""
	case v <= 0:
		l.add(d, path, SeverityError, "invalid-duration", "%s must be positive; leave it out for no limit", field)
		return ""
	}
	return v.String()
}

// checkFallbacks allows one fallback endpoint per listener, of a kind that can serve a
// connection whatever name it asked for.
func (l *loader) checkFallbacks() {
	first := map[string]*endpointDoc{}
	for _, ed := range l.endpoints {
		ep := ed.ep
		if !ep.Fallback {
			continue
		}
		switch {
		case ep.TerminateAt == TerminateAgent:
			l.addKey(ed.doc, "/fallback", SeverityError, "fallback-not-allowed",
				"a fallback endpoint is terminate_at: upstream or edge: the agent's certificate is for its own domain, and the connections have another or none")
		case ep.TerminateAt == TerminateEdge && ep.TLS.Certificate == nil:
			l.addKey(ed.doc, "/fallback", SeverityError, "fallback-not-allowed",
				"an edge fallback endpoint needs tls.certificate: an issuer needs a name to issue for, and fallback connections have another or none")
		}
		if f, dup := first[ep.Listen]; dup {
			l.addKey(ed.doc, "/fallback", SeverityError, "duplicate-fallback",
				"%s has a fallback endpoint already: %s at %s", listenName(ep.Listen), f.ep.Name, posString(f.doc.pos("/fallback")))
			continue
		}
		first[ep.Listen] = ed
	}
}
