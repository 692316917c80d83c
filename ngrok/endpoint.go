// Package ngrok turns ngrok TLS configurations — agent config files (version 2 tunnels,
// version 3 endpoints with traffic policies) and `ngrok tls` command lines — into tlsd
// endpoint documents. What has no tlsd equivalent is reported as a warning at its line in
// the source, never dropped in silence.
package ngrok

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tlsd/tlsd/schema"
)

// Endpoint is one tlsd endpoint made from an ngrok tunnel, endpoint or command line.
type Endpoint struct {
	Name, Domain, Listen, Upstream    string
	TerminateAt, Agent, ProxyProtocol string
	Allow, Deny                       []string
	MinVersion, MaxVersion            string
	Crt, Key                          file // tls.certificate
	Issuer                            string
	ClientCAs                         []file
	Strategy                          string
	// Source says where it came from, for the comment heading its file.
	Source string
}

// file is a path, or PEM given inline (written beside the endpoint when its file is).
// A path the source gave relative (to ngrok's working directory, BaseDir) is made
// absolute, and written relative to the endpoint's file again.
type file struct {
	Path     string
	PEM      []byte
	relative bool
}

func (f file) empty() bool { return f.Path == "" && f.PEM == nil }

// Result is what a conversion made: endpoints, and warnings about what it could not.
type Result struct {
	Endpoints []*Endpoint
	Warnings  schema.Diagnostics
}

func (r *Result) warn(pos schema.Pos, code, format string, args ...any) {
	r.Warnings = append(r.Warnings, schema.Diagnostic{File: pos.File, Line: pos.Line, Column: pos.Column,
		Code: code, Severity: schema.SeverityWarning, Message: fmt.Sprintf(format, args...)})
}

// Warning codes.
const (
	CodeSkipped     = "ngrok-skipped"     // a tunnel or endpoint tlsd cannot serve
	CodeUnsupported = "ngrok-unsupported" // a setting tlsd has no equivalent for, left out
	CodeUnknown     = "ngrok-unknown"     // a field ngrok's documentation does not have either
	CodeApproximate = "ngrok-approximate" // converted, but not exactly as ngrok does it
)

// Modeline is the first line of every file written: editors find the schema by it.
const Modeline = "# yaml-language-server: $schema=https://raw.githubusercontent.com/tlsd/tlsd/main/schema/endpoint.schema.json"

// Write writes each endpoint to DIR/NAME.yaml, and inline PEM beside it (keys mode
// 0600), and returns the paths. It refuses to replace an existing file unless force.
func (r *Result) Write(dir string, force bool) ([]string, error) {
	files, order := r.Files(dir)
	if !force {
		for path := range files {
			if _, err := os.Stat(path); err == nil {
				return nil, fmt.Errorf("%s exists; give --force to replace it, or another --out", path)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for path, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(path, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(path, data, mode); err != nil {
			return nil, err
		}
		os.Chmod(path, mode) // a replaced file keeps its old mode otherwise
	}
	return order, nil
}

// Files are what Write writes to dir, by path, and the endpoint files in order.
func (r *Result) Files(dir string) (map[string][]byte, []string) {
	files := map[string][]byte{}
	var order []string
	for _, ep := range r.Endpoints {
		doc, extra := ep.render(dir)
		name := filepath.Join(dir, ep.Name+".yaml")
		files[name], order = doc, append(order, name)
		for base, data := range extra {
			files[filepath.Join(dir, base)] = data
		}
	}
	return files, order
}

// render is the endpoint's document as a file in dir, and the files of its inline PEM
// by name.
func (ep *Endpoint) render(dir string) ([]byte, map[string][]byte) {
	extra := map[string][]byte{}
	absDir, _ := filepath.Abs(dir)
	ref := func(f file, suffix string) string {
		if f.PEM == nil {
			if rel, err := filepath.Rel(absDir, f.Path); err == nil && f.relative {
				return rel
			}
			return f.Path
		}
		name := ep.Name + suffix
		extra[name] = f.PEM
		return name
	}
	m := &mapping{}
	m.add("apiVersion", schema.APIVersion).add("kind", "Endpoint").add("name", ep.Name).add("domain", ep.Domain)
	m.add("listen", ep.Listen).add("upstream", ep.Upstream).add("terminate_at", ep.TerminateAt).add("agent", ep.Agent)
	m.add("upstream_proxy_protocol", ep.ProxyProtocol)
	if len(ep.Allow)+len(ep.Deny) > 0 {
		m.addNode("ip_restriction", (&mapping{}).addList("allow_cidrs", ep.Allow).addList("deny_cidrs", ep.Deny).node())
	}
	t := &mapping{}
	t.add("min_version", ep.MinVersion).add("max_version", ep.MaxVersion)
	if !ep.Crt.empty() {
		t.addNode("certificate", (&mapping{}).add("crt", ref(ep.Crt, ".crt")).add("key", ref(ep.Key, ".key")).node())
	}
	t.add("issuer", ep.Issuer)
	if len(ep.ClientCAs) > 0 {
		var cas []string
		for i, f := range ep.ClientCAs {
			cas = append(cas, ref(f, fmt.Sprintf("-client-ca-%d.crt", i+1)))
		}
		t.addNode("mutual_tls", (&mapping{}).addList("certificate_authorities", cas).add("verification_strategy", ep.Strategy).node())
	}
	if len(t.n.Content) > 0 {
		m.addNode("tls", t.node())
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\n#\n# Imported from %s by tlsd import ngrok.\n", Modeline, ep.Source)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	enc.Encode(m.node())
	enc.Close()
	return buf.Bytes(), extra
}

// mapping builds a YAML mapping in order, leaving out empty values.
type mapping struct{ n yaml.Node }

func (m *mapping) node() *yaml.Node { m.n.Kind = yaml.MappingNode; return &m.n }

func (m *mapping) add(key, value string) *mapping {
	if value == "" {
		return m
	}
	v := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	if looksNonString.MatchString(value) {
		v.Style = yaml.DoubleQuotedStyle // "1.3" must stay a string
	}
	return m.addNode(key, v)
}

var looksNonString = regexp.MustCompile(`^[0-9.]+$|^(true|false|yes|no|on|off|null|~)$|^\*`)

func (m *mapping) addList(key string, values []string) *mapping {
	if len(values) == 0 {
		return m
	}
	l := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range values {
		l.Content = append(l.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: v})
	}
	return m.addNode(key, l)
}

func (m *mapping) addNode(key string, v *yaml.Node) *mapping {
	m.n.Content = append(m.n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	return m
}
