package schema

import (
	"cmp"
	"fmt"
	"slices"
)

// Severity of a diagnostic.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem found in the configuration, positioned at the YAML node that is
// wrong. Code is stable across releases so that tools may match on it.
type Diagnostic struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Path     string   `json:"path"`
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

func (d Diagnostic) String() string {
	return fmt.Sprintf("%s:%d:%d: %s: %s [%s]", d.File, d.Line, d.Column, d.Severity, d.Message, d.Code)
}

// Diagnostics is a list of findings.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity == SeverityError })
}

// Count returns the number of errors and warnings.
func (ds Diagnostics) Count() (errs, warns int) {
	for _, d := range ds {
		if d.Severity == SeverityError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

// Sort orders diagnostics by file, then position, then code, so output is stable.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column), cmp.Compare(a.Code, b.Code))
	})
}

// diag builds diagnostics at a position.
func diagAt(p Pos, path string, sev Severity, code, format string, args ...any) Diagnostic {
	return Diagnostic{File: p.File, Line: p.Line, Column: p.Column, Path: path, Code: code,
		Severity: sev, Message: fmt.Sprintf(format, args...)}
}

// Summary is the one-line count that ends a text report.
func (r *Result) Summary() string {
	errs, warns := r.Diagnostics.Count()
	return fmt.Sprintf("%s, %s: %s, %s", plural(r.Files, "file"), plural(r.Endpoints, "endpoint"),
		plural(errs, "error"), plural(warns, "warning"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
