// Package report writes what tlsd validate found: diagnostics with their source line and
// a caret (text, optionally coloured), one JSON object for tools, or GitHub workflow
// annotations; each ends with the summary line.
package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tlsd/tlsd/schema"
)

// Output formats of Write.
const (
	FormatText   = "text"
	FormatJSON   = "json"
	FormatGitHub = "github"
)

// Formats lists the report formats, for flag help and validation.
var Formats = []string{FormatText, FormatJSON, FormatGitHub}

// Options tune Write.
type Options struct {
	Format string
	Color  bool // ANSI colours in text output (only when writing to a terminal)
}

// Write prints the diagnostics of r and a summary.
func Write(w io.Writer, r *schema.Result, o Options) error {
	bw := bufio.NewWriter(w)
	switch o.Format {
	case FormatJSON:
		writeJSON(bw, r)
	case FormatGitHub:
		writeGitHub(bw, r)
	case FormatText, "":
		writeText(bw, r, o.Color)
	default:
		return fmt.Errorf("unknown format %q (want one of %s)", o.Format, strings.Join(Formats, ", "))
	}
	return bw.Flush()
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiGreen  = "\x1b[1;32m"
	ansiBlue   = "\x1b[1;34m"
)

func writeText(w *bufio.Writer, r *schema.Result, color bool) {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	src := sourceCache{}
	for _, d := range r.Diagnostics {
		sevColor := ansiRed
		if d.Severity == schema.SeverityWarning {
			sevColor = ansiYellow
		}
		fmt.Fprintf(w, "%s %s %s [%s]\n", paint(ansiBold, fmt.Sprintf("%s:%d:%d:", d.File, d.Line, d.Column)),
			paint(sevColor, string(d.Severity)+":"), d.Message, d.Code)
		if line, ok := src.line(d.File, d.Line); ok {
			gutter := fmt.Sprintf("%5d | ", d.Line)
			fmt.Fprintf(w, "%s%s\n", paint(ansiBlue, gutter), line)
			fmt.Fprintf(w, "%s%s%s\n", paint(ansiBlue, "      | "), caretIndent(line, d.Column), paint(sevColor, "^"))
		}
	}
	errs, _ := r.Diagnostics.Count()
	sum := r.Summary()
	if errs == 0 {
		sum = paint(ansiGreen, sum)
	} else {
		sum = paint(ansiRed, sum)
	}
	fmt.Fprintln(w, sum)
}

// caretIndent keeps tabs as tabs so the caret lines up under the column.
func caretIndent(line string, col int) string {
	var b strings.Builder
	for i, r := range line {
		if i >= col-1 {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// sourceCache reads each file once to show the offending line.
type sourceCache map[string][]string

func (c sourceCache) line(file string, n int) (string, bool) {
	lines, ok := c[file]
	if !ok {
		data, err := os.ReadFile(file)
		if err == nil && len(data) <= schema.MaxFileSize {
			lines = strings.Split(string(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))), "\n")
		}
		c[file] = lines
	}
	if n < 1 || n > len(lines) {
		return "", false
	}
	return strings.TrimRight(lines[n-1], " \t\r"), true
}

type jsonReport struct {
	Diagnostics schema.Diagnostics `json:"diagnostics"`
	Summary     jsonSummary        `json:"summary"`
}

type jsonSummary struct {
	Files     int `json:"files"`
	Endpoints int `json:"endpoints"`
	Errors    int `json:"errors"`
	Warnings  int `json:"warnings"`
}

func writeJSON(w *bufio.Writer, r *schema.Result) {
	errs, warns := r.Diagnostics.Count()
	diags := r.Diagnostics
	if diags == nil {
		diags = schema.Diagnostics{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(jsonReport{Diagnostics: diags,
		Summary: jsonSummary{Files: r.Files, Endpoints: r.Endpoints, Errors: errs, Warnings: warns}})
}

// writeGitHub prints workflow commands, which GitHub Actions shows as annotations on the
// pull request's lines.
func writeGitHub(w *bufio.Writer, r *schema.Result) {
	for _, d := range r.Diagnostics {
		fmt.Fprintf(w, "::%s file=%s,line=%d,col=%d,title=%s::%s\n", d.Severity,
			ghProperty(d.File), d.Line, d.Column, ghProperty("tlsd "+d.Code), ghData(d.Message))
	}
	fmt.Fprintln(w, r.Summary())
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
