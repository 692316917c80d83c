package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep hostile or broken input from costing unbounded time or memory
// (an alias bomb expands exponentially when walked naively).
const (
	maxDocNodes = 10_000
	maxDocDepth = 64
)

// document is one YAML document of a file and its JSON-like value for the schema
// validator. Positions are found on demand by walking the node tree along a path, since
// only diagnostics need them.
type document struct {
	file     string
	root     *yaml.Node
	instance any // JSON-like value: map[string]any, []any, string, int64, float64, bool, nil
	nodes    int
}

// lookup finds the key and value nodes at a JSON pointer path ("/tls/min_version"). It
// returns the deepest node it reached, so a missing field resolves to its parent.
func (d *document) lookup(path string) (key, value *yaml.Node, found bool) {
	value = d.root
	if path == "" {
		return nil, value, true
	}
	for _, tok := range strings.Split(path[1:], "/") {
		v := deref(value)
		switch v.Kind {
		case yaml.MappingNode:
			k, val := mappingEntry(v, unescapePointer(tok))
			if val == nil {
				return nil, value, false
			}
			key, value = k, val
		case yaml.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v.Content) {
				return nil, value, false
			}
			key, value = nil, v.Content[i]
		default:
			return nil, value, false
		}
	}
	return key, value, true
}

// mappingEntry returns the first key/value pair named name; the first is what convert kept.
func mappingEntry(m *yaml.Node, name string) (key, value *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == name {
			return k, m.Content[i+1]
		}
	}
	return nil, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxDocDepth; i++ {
		n = n.Alias
	}
	return n
}

// has reports whether the field at path is present.
func (d *document) has(path string) bool {
	_, _, found := d.lookup(path)
	return found
}

// pos is the position of the value at path, or of its closest present ancestor.
func (d *document) pos(path string) Pos {
	_, v, _ := d.lookup(path)
	return d.nodePos(v)
}

// keyPos is the position of the key of the field at path (for "unknown field" and the like).
func (d *document) keyPos(path string) Pos {
	k, v, _ := d.lookup(path)
	if k != nil {
		return d.nodePos(k)
	}
	return d.nodePos(v)
}

func (d *document) nodePos(n *yaml.Node) Pos {
	return Pos{File: d.file, Line: max(n.Line, 1), Column: max(n.Column, 1)}
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocuments splits data into documents. A syntax error becomes a diagnostic at its
// line; the documents before it are still returned.
func parseDocuments(file string, data []byte) (docs []*document, diags Diagnostics) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var root yaml.Node
		err := decodeNoPanic(dec, &root)
		if errors.Is(err, io.EOF) {
			return docs, diags
		}
		if err != nil {
			return docs, append(diags, syntaxDiagnostic(file, data, err))
		}
		doc, ds := newDocument(file, &root)
		diags = append(diags, ds...)
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// decodeNoPanic guards the one third-party parser that sees raw user bytes: a parser bug
// must become a diagnostic, never a crash of a daemon that is already serving.
func decodeNoPanic(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed on this file (%v)", r)
		}
	}()
	return dec.Decode(n)
}

func syntaxDiagnostic(file string, data []byte, err error) Diagnostic {
	msg, line := err.Error(), 1
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	line, col := problemLine(data, line, msg)
	if startsWithTab(data, line) {
		msg += "; indent with spaces: YAML does not allow tabs for indentation"
	}
	return diagAt(Pos{File: file, Line: max(line, 1), Column: col}, "", SeverityError,
		"yaml-syntax", "invalid YAML: %s", msg)
}

// problemLine finds the line that breaks the YAML. The parser reports where the enclosing
// block began (its "context"), which for a mis-indented key is the line above the mistake.
// The first prefix of the file, from that line on, that fails with the same problem ends at
// the culprit. The search is bounded so a huge file cannot make it quadratic.
func problemLine(data []byte, reported int, problem string) (line, col int) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if reported < 1 || reported > len(lines) {
		return reported, 1
	}
	prefixLen := 0
	for _, l := range lines[:reported-1] {
		prefixLen += len(l)
	}
	for n := reported; n <= len(lines) && n < reported+200; n++ {
		prefixLen += len(lines[n-1])
		if err := parseAll(data[:prefixLen]); err != nil && strings.HasSuffix(err.Error(), problem) {
			return n, firstColumn(lines[n-1])
		}
	}
	return reported, firstColumn(lines[reported-1])
}

func startsWithTab(data []byte, line int) bool {
	lines := bytes.SplitN(data, []byte("\n"), line+1)
	return line >= 1 && line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t"))
}

func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := decodeNoPanic(dec, &n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func firstColumn(line []byte) int {
	trimmed := bytes.TrimLeft(line, " \t")
	if len(bytes.TrimSpace(trimmed)) == 0 {
		return 1
	}
	return len(line) - len(trimmed) + 1
}

// newDocument indexes one parsed document. Empty documents (a lone "---" or only comments)
// yield nil and no diagnostic.
func newDocument(file string, root *yaml.Node) (*document, Diagnostics) {
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
		return nil, nil
	}
	d := &document{file: file, root: root}
	if root.Kind != yaml.MappingNode {
		return nil, Diagnostics{diagAt(d.nodePos(root), "", SeverityError, "not-a-mapping",
			"a document must be a mapping with apiVersion, kind and name, not a %s", nodeKindName(root))}
	}
	var diags Diagnostics
	d.instance = d.convert(root, nil, 0, &diags)
	if diags.HasErrors() && d.nodes > maxDocNodes {
		return nil, diags
	}
	return d, diags
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	default:
		return "YAML node"
	}
}

// convert turns n into a JSON-like value for the schema validator, indexing every node
// by path on the way.
func (d *document) convert(n *yaml.Node, path []string, depth int, diags *Diagnostics) any {
	d.nodes++
	if d.nodes > maxDocNodes || depth > maxDocDepth {
		if d.nodes == maxDocNodes+1 || depth == maxDocDepth+1 {
			*diags = append(*diags, diagAt(d.nodePos(n), toDotted(pointer(path)), SeverityError, "document-too-large",
				"document is too large or too deeply nested (more than %d values or %d levels, aliases expanded)",
				maxDocNodes, maxDocDepth))
		}
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil
		}
		return d.convert(n.Alias, path, depth+1, diags)
	case yaml.MappingNode:
		return d.convertMapping(n, path, depth, diags)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, d.convert(c, append(path, strconv.Itoa(i)), depth+1, diags))
		}
		return out
	default:
		return scalarValue(n)
	}
}

func (d *document) convertMapping(n *yaml.Node, path []string, depth int, diags *Diagnostics) any {
	out := make(map[string]any, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			*diags = append(*diags, diagAt(d.nodePos(k), toDotted(pointer(path)), SeverityError, "invalid-key",
				"a field name must be a plain word, not a %s", nodeKindName(k)))
			continue
		}
		child := append(path, k.Value)
		if k.ShortTag() == "!!merge" {
			*diags = append(*diags, diagAt(d.nodePos(k), toDotted(pointer(path)), SeverityError, "unsupported-yaml",
				"merge keys (<<) are not supported; write the fields out or use an anchor for a whole value"))
			continue
		}
		if _, dup := out[k.Value]; dup {
			prev, _ := mappingEntry(n, k.Value)
			*diags = append(*diags, diagAt(d.nodePos(k), toDotted(pointer(child)), SeverityError, "duplicate-key",
				"field %q is already set on line %d", k.Value, prev.Line))
			continue
		}
		out[k.Value] = d.convert(v, child, depth+1, diags)
	}
	return out
}

// scalarValue resolves a scalar the way YAML 1.2's core schema does, so that the schema
// validator sees `1.3` as a number and can complain that it should be the string "1.3".
func scalarValue(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
		return float64(0) // out of int64 range: still a number
	case "!!float":
		var f float64
		if n.Decode(&f) == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
		return float64(0) // .nan/.inf: still a number
	}
	return n.Value
}

// escapePointer escapes a key for a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func unescapePointer(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// toDotted turns "/tls/mutual_tls/certificate_authorities/0" into
// "tls.mutual_tls.certificate_authorities[0]" for humans.
func toDotted(path string) string {
	if path == "" {
		return ""
	}
	var b strings.Builder
	for _, tok := range strings.Split(path[1:], "/") {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(unescapePointer(tok))
	}
	return b.String()
}

// pointer joins JSON pointer tokens.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}
