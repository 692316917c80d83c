package report

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/golden"
	"github.com/tlsd/tlsd/schema"
)

var fixedNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestGitHubEscaping(t *testing.T) {
	r := &schema.Result{Files: 1, Diagnostics: schema.Diagnostics{{File: "a,b:c.yaml", Line: 2, Column: 3, Code: "x",
		Severity: schema.SeverityWarning, Message: "100% sure\nsecond line"}}}
	var b bytes.Buffer
	must(t, Write(&b, r, Options{Format: FormatGitHub}))
	want := "::warning file=a%2Cb%3Ac.yaml,line=2,col=3,title=tlsd x::100%25 sure%0Asecond line\n"
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("got %q\nwant prefix %q", b.String(), want)
	}
}

// TestTextReportGolden shows the text format as a user sees it, source lines and carets
// included (tabs kept so the caret lines up).
func TestTextReportGolden(t *testing.T) {
	dir := filepath.Join("testdata", "report")
	res, err := schema.Load(schema.Options{Now: fixedNow}, filepath.Join(dir, "input"))
	must(t, err)
	var b bytes.Buffer
	must(t, Write(&b, res, Options{Format: FormatText}))
	golden.Check(t, filepath.Join(dir, "want.txt"), b.Bytes())
}

func TestReportUnknownFormat(t *testing.T) {
	if err := Write(&bytes.Buffer{}, &schema.Result{}, Options{Format: "xml"}); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestSummaryPlurals(t *testing.T) {
	r := &schema.Result{Files: 1, Endpoints: 2, Diagnostics: schema.Diagnostics{{Severity: schema.SeverityError}, {Severity: schema.SeverityWarning}, {Severity: schema.SeverityWarning}}}
	if got, want := r.Summary(), "1 file, 2 endpoints: 1 error, 2 warnings"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}
