package schema

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// explainValue turns a pattern or length failure of a known field into a specific reason.
// The schema's patterns decide validity (editors use them too); these functions only say
// why, and TestPatternsAgreeWithExplanations keeps the two in step.
func explainValue(field string, kw interface{ KeywordPath() []string }, loc []string, instance any) (code, msg string) {
	value, _ := valueAt(instance, loc).(string)
	switch field {
	case "domain":
		return "invalid-domain", fmt.Sprintf("domain %q is not a valid server name: %s", value, orGeneric(domainProblem(value)))
	case "listen":
		return "invalid-listen", fmt.Sprintf("listen %q is not a valid address: %s", value, orGeneric(listenProblem(value)))
	case "upstream":
		return "invalid-upstream", fmt.Sprintf("upstream %q is not valid: %s", value, orGeneric(upstreamProblem(value)))
	case "name", "agent", "issuer":
		return "invalid-name", fmt.Sprintf("%s %q is not valid: %s", field, value, orGeneric(NameProblem(value)))
	case "directory":
		return "invalid-url", fmt.Sprintf("directory %q must be an https:// URL of an ACME directory", value)
	case "email":
		return "invalid-email", fmt.Sprintf("email %q is not an email address", value)
	}
	if ml, ok := kw.(*kind.MaxLength); ok {
		return "invalid-value", fmt.Sprintf("%s is %d characters long; at most %d are allowed", field, ml.Got, ml.Want)
	}
	return "invalid-value", fmt.Sprintf("%s %q is not valid", field, value)
}

func orGeneric(reason string) string {
	if reason == "" {
		return "it does not have the expected form"
	}
	return reason
}

func valueAt(v any, loc []string) any {
	for _, tok := range loc {
		switch c := v.(type) {
		case map[string]any:
			v = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// NameProblem says what is wrong with a document or agent name (a DNS label), or "".
func NameProblem(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 63:
		return fmt.Sprintf("it is %d characters long; at most 63 are allowed", len(s))
	case strings.ToLower(s) != s:
		return fmt.Sprintf("use lower case: %q", strings.ToLower(s))
	case s[0] == '-' || s[len(s)-1] == '-':
		return "it must start and end with a letter or digit"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Sprintf("%q is not allowed; use lower-case letters, digits and '-'", r)
		}
	}
	return ""
}

// domainProblem says what is wrong with an endpoint's domain, or "". It accepts exactly
// what the schema's pattern accepts, plus the checks a regular expression cannot say
// well (IP addresses).
func domainProblem(s string) string {
	if s == "" {
		return "it is empty"
	}
	if len(s) > 253 {
		return fmt.Sprintf("it is %d characters long; at most 253 are allowed", len(s))
	}
	if strings.HasSuffix(s, ".") {
		return "remove the trailing dot"
	}
	name := strings.TrimPrefix(s, "*.")
	if strings.Contains(name, "*") {
		return `a wildcard is allowed only as the whole first label ("*.example.com")`
	}
	for _, label := range strings.Split(name, ".") {
		if p := labelProblem(label); p != "" {
			return p
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "an IP address cannot be sent as a server name (SNI); use a DNS name"
	}
	return ""
}

func labelProblem(label string) string {
	switch {
	case label == "":
		return "it has an empty label (two dots in a row, or a leading dot)"
	case len(label) > 63:
		return fmt.Sprintf("label %q is longer than 63 characters", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Sprintf("label %q must not start or end with '-'", label)
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			if r > 127 {
				return "internationalized names must be written in their ASCII (punycode, xn--) form"
			}
			return fmt.Sprintf("%q is not allowed in a host name", r)
		}
	}
	return ""
}

// listenProblem says what is wrong with a listen address, or "".
func listenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return `write "host:port" or ":port", e.g. ":443" or "127.0.0.1:8443"`
	}
	return hostPortProblem(s, host, port)
}

// upstreamProblem says what is wrong with an upstream, or "".
func upstreamProblem(s string) string {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return `"unix:" needs a socket path, e.g. "unix:/run/app.sock"`
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return `write "host:port" (e.g. "127.0.0.1:9000") or "unix:/path/to/socket"`
	}
	if host == "" {
		return `the host is missing; write "127.0.0.1:` + port + `" for this machine`
	}
	return hostPortProblem(s, host, port)
}

// hostPortProblem checks the parts of an address that net.SplitHostPort accepted.
func hostPortProblem(s, host, port string) string {
	if p := portProblem(port); p != "" {
		return p
	}
	if strings.HasPrefix(s, "[") {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf("%q in brackets is not an IPv6 address", host)
		}
	}
	return ""
}

func portProblem(port string) string {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || len(port) > 5 {
		return fmt.Sprintf("port %q must be a number from 1 to 65535", port)
	}
	return ""
}

// suggest returns the candidate closest to s when it is close enough to be a typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", len(s)/3+2
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
