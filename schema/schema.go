// Package schema is tlsd's desired state: the Go types of the configuration language
// (apiVersion tlsd/v1), its embedded JSON Schema, and Load, which reads a directory of YAML
// documents into a Config and a list of positioned Diagnostics.
//
// It is pure apart from reading files, and knows nothing of sockets.
package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// JSON is the JSON Schema (draft-07) of a configuration document, as printed by
// `tlsd schema` and used by editors through a yaml-language-server comment.
//
//go:embed endpoint.schema.json
var JSON []byte

const schemaURL = "https://github.com/tlsd/tlsd/schema/endpoint.schema.json"

// compiled is the schema compiled once; it is never modified after.
var compiled = sync.OnceValues(func() (*validator, error) {
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSON))
	if err != nil {
		return nil, fmt.Errorf("parse embedded schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	if err := c.AddResource(schemaURL, raw); err != nil {
		return nil, fmt.Errorf("add embedded schema: %w", err)
	}
	v := &validator{byKind: map[string]*jsonschema.Schema{}}
	v.schema, err = c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("compile embedded schema: %w", err)
	}
	// Documents of a known kind are validated against their definition directly, which
	// gives the same errors without evaluating the kind dispatch for every document.
	for kind, def := range map[string]string{"Endpoint": "endpoint", "Issuer": "issuer", "IPPolicy": "ippolicy"} {
		if v.byKind[kind], err = c.Compile(schemaURL + "#/definitions/" + def); err != nil {
			return nil, fmt.Errorf("compile embedded schema: %w", err)
		}
	}
	if err := json.Unmarshal(JSON, &v.tree); err != nil {
		return nil, fmt.Errorf("parse embedded schema: %w", err)
	}
	return v, nil
})

type validator struct {
	schema *jsonschema.Schema            // the whole schema
	byKind map[string]*jsonschema.Schema // each kind's definition, when apiVersion and kind are right
	tree   map[string]any                // the schema as plain JSON, to list allowed fields for suggestions
}

// conditionalRules marks the schema's terminate_at rules. Go checks the same rules with
// better messages (checkMode), so errors from there are only a fallback.
const conditionalRules = "/definitions/endpoint/allOf/"

// check validates one document. It returns the diagnostics for everything but the
// terminate_at rules, and whether those rules failed too.
func (v *validator) check(d *document) (diags Diagnostics, modeFailed bool) {
	sch := v.schema
	if m, ok := d.instance.(map[string]any); ok && m["apiVersion"] == APIVersion && v.byKind[str(m, "kind")] != nil {
		sch = v.byKind[str(m, "kind")]
	}
	err := sch.Validate(d.instance)
	if err == nil {
		return nil, false
	}
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return Diagnostics{diagAt(d.pos(""), "", SeverityError, "schema", "%v", err)}, false
	}
	for _, leaf := range leaves(verr, nil) {
		if strings.Contains(leaf.SchemaURL, conditionalRules) {
			modeFailed = true
			continue
		}
		diags = append(diags, v.explain(d, leaf)...)
	}
	return dropImpliedMissing(diags), modeFailed
}

// dropImpliedMissing leaves out a missing field that a misspelt one stands for: the
// did-you-mean of `upsteam` says it all, without a second error at the document's start.
func dropImpliedMissing(diags Diagnostics) Diagnostics {
	meant := map[string]bool{}
	for _, d := range diags {
		if s, ok := DidYouMean(d.Message); ok && d.Code == "unknown-field" {
			parent, _ := cutLast(d.Path)
			meant[joinDotted(parent, s)] = true
		}
	}
	return slices.DeleteFunc(diags, func(d Diagnostic) bool { return d.Code == "missing-field" && meant[d.Path] })
}

// DidYouMean returns the suggestion a diagnostic's message makes, if any.
func DidYouMean(msg string) (string, bool) {
	_, after, ok := strings.Cut(msg, `did you mean "`)
	if !ok {
		return "", false
	}
	s, _, ok := strings.Cut(after, `"`)
	return s, ok
}

func cutLast(dotted string) (parent, last string) {
	if i := strings.LastIndexByte(dotted, '.'); i >= 0 {
		return dotted[:i], dotted[i+1:]
	}
	return "", dotted
}

func joinDotted(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func leaves(e *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return append(out, e)
	}
	for _, c := range e.Causes {
		out = leaves(c, out)
	}
	return out
}

var english = message.NewPrinter(language.English)

// explain turns one schema error into diagnostics a human can act on.
func (v *validator) explain(d *document, e *jsonschema.ValidationError) Diagnostics {
	path := pointer(e.InstanceLocation)
	field := fieldName(e.InstanceLocation)
	at := func(code, format string, args ...any) Diagnostics {
		return Diagnostics{diagAt(d.pos(path), toDotted(path), SeverityError, code, format, args...)}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		var out Diagnostics
		allowed := v.fieldsAt(d.instance, e.InstanceLocation)
		for _, p := range k.Properties {
			child := path + "/" + escapePointer(p)
			msg := fmt.Sprintf("unknown field %q", p)
			if s := suggest(p, allowed); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else if len(allowed) > 0 {
				msg += "; allowed here: " + strings.Join(allowed, ", ")
			}
			out = append(out, diagAt(d.keyPos(child), toDotted(child), SeverityError, "unknown-field", "%s", msg))
		}
		return out
	case *kind.Required:
		var out Diagnostics
		for _, m := range k.Missing {
			out = append(out, diagAt(d.pos(path), toDotted(pointer(append(slices.Clone(e.InstanceLocation), m))),
				SeverityError, "missing-field", "%s", missingMessage(path, m)))
		}
		return out
	case *kind.Type:
		_, node, _ := d.lookup(path)
		return at("wrong-type", "%s", typeMessage(field, node, k))
	case *kind.Enum:
		return at("invalid-value", "%s", enumMessage(field, k.Got, k.Want))
	case *kind.Const:
		return at("invalid-value", "%s", enumMessage(field, k.Got, []any{k.Want}))
	case *kind.Pattern, *kind.MaxLength:
		code, msg := explainValue(field, k.(interface{ KeywordPath() []string }), e.InstanceLocation, d.instance)
		return at(code, "%s", msg)
	case *kind.Minimum:
		return at("invalid-limit", "%s must be at least %s; leave it out for no limit", field, k.Want.RatString())
	case *kind.MinLength:
		return at("empty-value", "%s must not be empty", field)
	case *kind.MinItems:
		return at("empty-value", "%s needs at least one entry", field)
	default:
		return at("schema", "%s: %s", orRoot(field), e.ErrorKind.LocalizedString(english))
	}
}

func orRoot(field string) string {
	if field == "" {
		return "document"
	}
	return field
}

// fieldName is the last named (non-index) token of a location: the field a human sees.
func fieldName(loc []string) string {
	for i := len(loc) - 1; i >= 0; i-- {
		if _, err := strconv.Atoi(loc[i]); err != nil {
			return loc[i]
		}
	}
	return ""
}

func missingMessage(path, field string) string {
	switch {
	case path == "" && field == "domain":
		return `missing required field "domain": every endpoint needs one, it is how connections are routed`
	case path == "" && field == "upstream":
		return `missing required field "upstream": where connections go, "host:port" or "unix:/path"`
	case path == "" && field == "apiVersion":
		return `missing required field "apiVersion"; add apiVersion: tlsd/v1`
	case path == "" && field == "kind":
		return `missing required field "kind": Endpoint or Issuer`
	}
	return fmt.Sprintf("missing required field %q", field)
}

// typeMessage explains a type mismatch; a number or boolean where a string belongs gets
// the exact spelling to use, since YAML's `min_version: 1.3` is the classic trap.
func typeMessage(field string, n *yaml.Node, k *kind.Type) string {
	want := strings.Join(k.Want, " or ")
	if slices.Contains(k.Want, "string") && n != nil && n.Kind == yaml.ScalarNode &&
		(k.Got == "number" || k.Got == "integer" || k.Got == "boolean") {
		if fix := stringFix(field, n.Value); fix != n.Value {
			return fmt.Sprintf("%s must be a string, not the %s %s; write it as: %s: %q", field, k.Got, n.Value, field, fix)
		}
		return fmt.Sprintf("%s must be a string, not the %s %s; quote it: %s: %q", field, k.Got, n.Value, field, n.Value)
	}
	return fmt.Sprintf("%s must be %s %s, not %s", field, article(want), want, article(k.Got)+" "+k.Got)
}

// stringFix is what a number written for a string field most likely meant: a port alone
// is listen's ":443", a version number is upstream_proxy_protocol's "v2".
func stringFix(field, value string) string {
	switch field {
	case "listen":
		if _, err := strconv.Atoi(value); err == nil {
			return ":" + value
		}
	case "upstream_proxy_protocol":
		if value == "1" || value == "2" {
			return "v" + value
		}
	}
	return value
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func enumMessage(field string, got any, want []any) string {
	opts := make([]string, len(want))
	for i, w := range want {
		opts[i] = fmt.Sprint(w)
	}
	gotS := fmt.Sprint(got)
	if s, ok := got.(string); ok {
		gotS = strconv.Quote(s)
	}
	var msg string
	if len(opts) == 1 {
		msg = fmt.Sprintf("%s must be %q, not %s", field, opts[0], gotS)
	} else {
		msg = fmt.Sprintf("%s must be one of %s; got %s", field, strings.Join(opts, ", "), gotS)
	}
	if s, ok := got.(string); ok {
		if sug := suggest(s, opts); sug != "" {
			msg += fmt.Sprintf("; did you mean %q?", sug)
		}
	}
	return msg
}

// fieldsAt lists the properties the schema allows for the object at loc of a document.
func (v *validator) fieldsAt(instance any, loc []string) []string {
	defs, _ := v.tree["definitions"].(map[string]any)
	m, _ := instance.(map[string]any)
	var node map[string]any
	switch m["kind"] {
	case "Endpoint":
		node, _ = defs["endpoint"].(map[string]any)
	case "Issuer":
		node, _ = defs["issuer"].(map[string]any)
	default:
		node = v.tree
	}
	for _, tok := range loc {
		node = v.resolve(node)
		if props, ok := node["properties"].(map[string]any); ok && props[tok] != nil {
			node, _ = props[tok].(map[string]any)
		} else if items, ok := node["items"].(map[string]any); ok {
			node = items
		} else {
			return nil
		}
	}
	props, _ := v.resolve(node)["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (v *validator) resolve(node map[string]any) map[string]any {
	ref, _ := node["$ref"].(string)
	name, ok := strings.CutPrefix(ref, "#/definitions/")
	if !ok {
		return node
	}
	defs, _ := v.tree["definitions"].(map[string]any)
	out, _ := defs[name].(map[string]any)
	return out
}
