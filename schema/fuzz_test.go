package schema

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: whatever the bytes, Load never panics, every diagnostic is positioned and
// coded, and a Config comes back exactly when there is no error.
func FuzzLoad(f *testing.F) {
	for _, kind := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", kind, "*", "*.y*ml"))
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("--- !!binary aGVsbG8=\n"))
	f.Add([]byte("apiVersion: tlsd/v1\nkind: Endpoint\nname: x\ndomain: x.com\nupstream: 1.2.3.4:5\ntls: {min_version: .nan}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := LoadData(Options{SkipFiles: true, Now: fixedNow}, "fuzz.yaml", data)
		if err != nil {
			t.Fatal(err)
		}
		checkWellFormed(t, res.Diagnostics)
		if (res.Config != nil) == res.Diagnostics.HasErrors() {
			t.Fatalf("Config present = %v, errors = %v", res.Config != nil, res.Diagnostics.HasErrors())
		}
	})
}
