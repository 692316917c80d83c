package schema

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsd/tlsd/internal/golden"
)

// prepareKeyModes gives the fixture keys the modes git cannot record: 0600, except the
// ones named *-loose.key that exist to draw the key-permissions warning.
func prepareKeyModes(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".key") {
			return err
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(p, "-loose.key") {
			mode = 0o644
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func caseDirs(t *testing.T, kind string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", kind, "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases in testdata/%s: %v", kind, err)
	}
	return dirs
}

// golden compares got with the file at path, or rewrites it with -update.

func diagLines(ds Diagnostics) []byte {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// TestInvalidCases checks every case in testdata/invalid against its want.txt: each
// diagnostic's file:line:col, severity, message and code.
func TestInvalidCases(t *testing.T) {
	prepareKeyModes(t)
	for _, dir := range caseDirs(t, "invalid") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, err := Load(Options{Now: fixedNow}, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Diagnostics) == 0 {
				t.Fatal("no diagnostics for a case meant to have some")
			}
			if res.Diagnostics.HasErrors() != (res.Config == nil) {
				t.Errorf("Config = %v with errors = %v", res.Config != nil, res.Diagnostics.HasErrors())
			}
			checkWellFormed(t, res.Diagnostics)
			golden.Check(t, filepath.Join(dir, "want.txt"), diagLines(res.Diagnostics))
		})
	}
}

// TestValidCases loads every case in testdata/valid, expects no diagnostic at all, and
// compares the loaded Config (defaults applied, paths resolved) with want.json.
func TestValidCases(t *testing.T) {
	prepareKeyModes(t)
	for _, dir := range caseDirs(t, "valid") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, err := Load(Options{Now: fixedNow}, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Diagnostics) > 0 {
				t.Fatalf("unexpected diagnostics:\n%s", diagLines(res.Diagnostics))
			}
			if res.Config == nil {
				t.Fatal("valid case gave no Config")
			}
			got, err := json.MarshalIndent(res.Config, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join(dir, "want.json"), append(got, '\n'))
		})
	}
}

// checkWellFormed holds for every diagnostic of every input.
func checkWellFormed(t *testing.T, ds Diagnostics) {
	t.Helper()
	for _, d := range ds {
		if d.File == "" || d.Line < 1 || d.Column < 1 || d.Code == "" || d.Message == "" ||
			(d.Severity != SeverityError && d.Severity != SeverityWarning) {
			t.Errorf("malformed diagnostic: %+v", d)
		}
		if !isKnownCode(d.Code) {
			t.Errorf("diagnostic code %q is not in Codes", d.Code)
		}
		if strings.Contains(d.Message, "goroutine ") || strings.Contains(d.Message, "panic") {
			t.Errorf("diagnostic leaks a stack or panic: %+v", d)
		}
	}
}
