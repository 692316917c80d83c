package schema

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestEveryPropertyReachesGo: the loader copies each document into its Go value by hand,
// so a property added to the JSON Schema and forgotten there would be accepted by
// validate and silently dropped. This walks every property the schema allows in an
// Endpoint, an Issuer and an IPPolicy, builds a document setting each to a sample value,
// and requires the value in the Go result (read through its JSON form, which spells
// fields as the YAML does).
func TestEveryPropertyReachesGo(t *testing.T) {
	var sch map[string]any
	if err := json.Unmarshal(JSON, &sch); err != nil {
		t.Fatal(err)
	}
	defs := sch["definitions"].(map[string]any)
	d := &document{file: "x.yaml", root: &yaml.Node{Line: 1, Column: 1}}
	builds := map[string]func(map[string]any) any{
		"endpoint": func(m map[string]any) any { return buildEndpoint(d, m) },
		"issuer":   func(m map[string]any) any { return buildIssuer(d, m) },
		"ippolicy": func(m map[string]any) any { return buildPolicy(d, m) },
	}
	for def, build := range builds {
		doc := sample(t, defs, defs[def].(map[string]any)).(map[string]any)
		delete(doc, "apiVersion") // the envelope: checked, never copied
		delete(doc, "kind")
		data, err := json.Marshal(build(doc))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		json.Unmarshal(data, &got)
		for _, path := range valuePaths(doc, "") {
			if !present(got, strings.Split(strings.TrimPrefix(path, "/"), "/")) {
				t.Errorf("%s property %s is allowed by the JSON Schema but never reaches the Go %s (load.go copies it by hand)", def, path, def)
			}
		}
	}
}

// sample makes a value the schema s describes: a string, 7, true, a one-item list, or
// an object with every property.
func sample(t *testing.T, defs map[string]any, s map[string]any) any {
	if ref, ok := s["$ref"].(string); ok {
		return sample(t, defs, defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any))
	}
	if enum, ok := s["enum"].([]any); ok {
		return enum[0]
	}
	for _, alt := range []string{"oneOf", "anyOf"} {
		if list, ok := s[alt].([]any); ok {
			return sample(t, defs, list[0].(map[string]any))
		}
	}
	typ := s["type"]
	if list, ok := typ.([]any); ok {
		typ = list[0]
	}
	switch typ {
	case "string":
		return "x"
	case "integer", "number":
		return int64(7)
	case "boolean":
		return true
	case "array":
		return []any{sample(t, defs, s["items"].(map[string]any))}
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			out[name] = sample(t, defs, p.(map[string]any))
		}
		return out
	}
	t.Fatalf("no sample for schema %v", s)
	return nil
}

// valuePaths lists the paths of the values in v that are not objects.
func valuePaths(v any, at string) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return []string{at}
	}
	var out []string
	for k, sub := range m {
		out = append(out, valuePaths(sub, at+"/"+k)...)
	}
	slices.Sort(out)
	return out
}

// present reports whether path leads to a value other than the zero value in v.
func present(v any, path []string) bool {
	if len(path) == 0 {
		switch x := v.(type) {
		case nil:
			return false
		case string:
			return x != ""
		case []any:
			return len(x) > 0
		}
		return true
	}
	m, ok := v.(map[string]any)
	return ok && present(m[path[0]], path[1:])
}
