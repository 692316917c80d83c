package reconcile

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/tlsd/tlsd/schema"
)

// notCompared lists the schema fields Diff deliberately does not compare, each with the
// reason. Every other field, however deep, must show up in the plan when it changes.
var notCompared = map[string]string{
	"Endpoint.Name": "the identity that pairs an old endpoint with its new self; a rename is a remove and an add",
	"Endpoint.Pos":  "where a document sits in its file is not what it serves",
	"Issuer.Name":   "the identity that pairs an old issuer with its new self",
	"Issuer.Pos":    "where a document sits in its file is not what it does",
	"Config.Files":  "which files were read is not what they declare; their endpoints and issuers are compared",
	"Config.Roots":  "where the configuration was loaded from; Diff compares its Portable form, paths relative to the roots",
	"Config.IPPolicies": "a policy counts through the endpoints that name it: their ip_restriction.allow and .deny, " +
		"the lists in force, are compared",
}

// walked are the Config fields whose elements TestDiffCoversEveryField walks field by field.
var walked = []string{"Config.Endpoints", "Config.Issuers"}

// TestDiffCoversEveryField changes each field of schema.Endpoint and schema.Issuer, at any
// depth, one at a time, and fails unless the plan reports that field (under its YAML
// name) or notCompared says why it is not compared. A field added to the schema without a
// decision here or in Diff fails this test.
func TestDiffCoversEveryField(t *testing.T) {
	endpointDiff := func(a, b reflect.Value) []string {
		p := Diff(cfg(a.Addr().Interface().(*schema.Endpoint)), cfg(b.Addr().Interface().(*schema.Endpoint)))
		return reported(p.Endpoints[0].Fields)
	}
	issuerDiff := func(a, b reflect.Value) []string {
		one := func(v reflect.Value) *schema.Config {
			return &schema.Config{Issuers: []*schema.Issuer{v.Addr().Interface().(*schema.Issuer)}}
		}
		return reported(Diff(one(a), one(b)).Issuers[0].Fields)
	}
	for _, c := range []struct {
		typ  reflect.Type
		diff func(a, b reflect.Value) []string
	}{
		{reflect.TypeFor[schema.Endpoint](), endpointDiff},
		{reflect.TypeFor[schema.Issuer](), issuerDiff},
	} {
		for _, miss := range uncovered(c.typ, c.diff, notCompared) {
			t.Errorf("a change of %s is not in the plan: compare it in reconcile.Diff, or add it to notCompared with the reason", miss)
		}
	}
	for i := range reflect.TypeFor[schema.Config]().NumField() {
		name := "Config." + reflect.TypeFor[schema.Config]().Field(i).Name
		if _, ok := notCompared[name]; !ok && !slices.Contains(walked, name) {
			t.Errorf("%s is neither walked by this test nor listed in notCompared", name)
		}
	}
}

// TestCoverageCheckFindsAForgottenField: the check itself can fail. A diff that compares
// one field of two is caught on the other, at any depth.
func TestCoverageCheckFindsAForgottenField(t *testing.T) {
	type inner struct{ Kept, Forgotten []string }
	type doc struct {
		Upstream string
		Nested   *inner
		Timeout  int64
	}
	onlySome := func(a, b reflect.Value) []string {
		x, y := a.Interface().(doc), b.Interface().(doc)
		var out []string
		if x.Upstream != y.Upstream {
			out = append(out, "upstream")
		}
		if (x.Nested == nil) != (y.Nested == nil) || x.Nested != nil && !slices.Equal(x.Nested.Kept, y.Nested.Kept) {
			out = append(out, "nested.kept")
		}
		return out
	}
	got := uncovered(reflect.TypeFor[doc](), onlySome, nil)
	want := []string{"doc.Nested.Forgotten", "doc.Timeout"}
	if !slices.Equal(got, want) {
		t.Errorf("uncovered = %v, want %v", got, want)
	}
}

func reported(fs []FieldChange) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Field
	}
	return out
}

// uncovered returns the field paths of typ (Type.Field.Sub) whose change diff does not
// report. diff gets two values of typ that differ in one field and returns the names of
// the fields it saw change, in YAML spelling; a name counts for a field when one is a
// prefix of the other ("tls.certificate" for a change of the certificate's content hash).
func uncovered(typ reflect.Type, diff func(a, b reflect.Value) []string, skip map[string]string) []string {
	var missing []string
	for _, path := range leafPaths(typ, []string{typ.Name()}, skip) {
		a, b := filled(typ, nil), filled(typ, path[1:])
		if !related(diff(a, b), yamlName(path[1:])) {
			missing = append(missing, strings.Join(path, "."))
		}
	}
	return missing
}

// leafPaths lists every path to a field that holds a value: scalars, slices and maps,
// and pointers (whose being set is itself a change), below the root.
func leafPaths(t reflect.Type, prefix []string, skip map[string]string) [][]string {
	var out [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		path := append(slices.Clone(prefix), f.Name)
		if _, ok := skip[strings.Join(path, ".")]; ok || !f.IsExported() {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			out = append(out, path) // nil against set
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, leafPaths(ft, path, skip)...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// filled makes a value of t with every field set; the field at change (a path below t)
// gets a different value, or, for a pointer named exactly, stays nil.
func filled(t reflect.Type, change []string) reflect.Value {
	v := reflect.New(t).Elem()
	fill(v, "", change)
	return v
}

func fill(v reflect.Value, at string, change []string) {
	here := len(change) == 0 // this value is the one to change
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				continue
			}
			name := v.Type().Field(i).Name
			var sub []string
			if len(change) > 0 && change[0] == name {
				sub = change[1:]
			} else {
				sub = []string{"\x00"} // no field is named that: nothing below changes
			}
			fill(v.Field(i), at+"."+name, sub)
		}
	case reflect.Pointer:
		if here {
			return // nil: set against unset
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), at, change)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), at, change)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, at+".key", nil)
		fill(e, at, change)
		v.SetMapIndex(k, e)
	default:
		setScalar(v, at, here)
	}
}

// setScalar gives a scalar a value that depends on its path, and another when changed.
func setScalar(v reflect.Value, at string, changed bool) {
	n := int64(1)
	if changed {
		n = 2
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s-%d", strings.TrimPrefix(at, "."), n))
	case reflect.Bool:
		v.SetBool(changed)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(n))
	default:
		panic(fmt.Sprintf("coverage test: teach fill about %s (at %s)", v.Kind(), at))
	}
}

// related: a reported name stands for the changed field when either is a prefix of the
// other at a dot.
func related(reports []string, field string) bool {
	for _, r := range reports {
		if r == field || strings.HasPrefix(field, r+".") || strings.HasPrefix(r, field+".") {
			return true
		}
	}
	return false
}

// yamlName spells a Go field path as the configuration does: TLS.MutualTLS.CARoots is
// tls.mutual_tls.ca_roots.
func yamlName(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = snake(p)
	}
	return strings.Join(parts, ".")
}

func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		// An acronym's plural stays with it: CIDRs is cidrs.
		plural := i+2 == len(r) && r[i+1] == 's'
		startsWord := i > 0 && unicode.IsUpper(c) &&
			(unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1]) && !plural)
		if startsWord {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
