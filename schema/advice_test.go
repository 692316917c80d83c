package schema

import (
	"regexp"
	"strings"
	"testing"
)

// suggestedValue matches the spelling a wrong-type diagnostic proposes.
var suggestedValue = regexp.MustCompile(`(?:quote it|write it as): [a-z_]+: ("[^"]*")`)

// applyAdvice edits the line a diagnostic points at as its advice says, and reports
// whether the diagnostic gave advice.
func applyAdvice(src string, d Diagnostic) (string, bool) {
	lines := strings.Split(src, "\n")
	line := &lines[d.Line-1]
	key, value, _ := strings.Cut(*line, ":")
	if m := suggestedValue.FindStringSubmatch(d.Message); m != nil {
		*line = key + ": " + m[1]
		return strings.Join(lines, "\n"), true
	}
	s, ok := DidYouMean(d.Message)
	switch {
	case !ok:
		return src, false
	case d.Code == "unknown-field":
		indent := key[:len(key)-len(strings.TrimLeft(key, " "))]
		*line = indent + s + ":" + value
	default:
		*line = key + ": " + `"` + s + `"`
	}
	return strings.Join(lines, "\n"), true
}

// TestAdviceValidates: every fix a diagnostic suggests, applied as written, gives a
// configuration that validates, and a misspelt key draws one diagnostic, not two.
func TestAdviceValidates(t *testing.T) {
	const base = "apiVersion: tlsd/v1\nkind: Endpoint\nname: a\ndomain: a.example.com\nupstream: 127.0.0.1:9000\n"
	const edge = "terminate_at: edge\ntls:\n  issuer: internal\n"
	cases := []struct{ name, doc string }{
		{"port alone for listen", base + "listen: 443\n"},
		{"number for upstream_proxy_protocol", base + "upstream_proxy_protocol: 2\n"},
		{"string without v for upstream_proxy_protocol", base + "upstream_proxy_protocol: \"2\"\n"},
		{"number for min_version", base + edge + "  min_version: 1.3\n"},
		{"misspelt terminate_at", base + "terminate_at: egde\ntls:\n  issuer: internal\n"},
		{"misspelt upstream key", strings.Replace(base, "upstream:", "upsteam:", 1)},
		{"misspelt tls key", base + edge + "  min_verison: \"1.3\"\n"},
		{"misspelt kind", strings.Replace(base, "Endpoint", "Endpiont", 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := LoadData(Options{SkipFiles: true}, "endpoint.yaml", []byte(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Diagnostics) != 1 {
				t.Fatalf("want exactly one diagnostic, got:\n%s", diagLines(res.Diagnostics))
			}
			fixed, ok := applyAdvice(c.doc, res.Diagnostics[0])
			if !ok {
				t.Fatalf("no advice in %q", res.Diagnostics[0].Message)
			}
			again, err := LoadData(Options{SkipFiles: true}, "endpoint.yaml", []byte(fixed))
			if err != nil {
				t.Fatal(err)
			}
			if again.Diagnostics.HasErrors() {
				t.Errorf("the advice %q, applied, still fails:\n%s\n%s", res.Diagnostics[0].Message, fixed, diagLines(again.Diagnostics))
			}
		})
	}
}
