package ngrok

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsd/tlsd/internal/golden"
	"github.com/tlsd/tlsd/schema"
)

// TestGolden converts each case under testdata — an ngrok.yml, or args (an ngrok command
// line, one word a line) — and compares the files it writes and its warnings with
// want.txt (go test -update rewrites them). Every converted directory must pass the
// checks of tlsd validate (without reading the certificate files, which are the user's).
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil || len(dirs) < 10 {
		t.Fatalf("cases: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res := convertCase(t, dir)
			const out = "/srv/tlsd/endpoints" // relative certificate paths are written relative to it
			files, _ := res.Files(out)
			var got strings.Builder
			for _, p := range slices.Sorted(maps.Keys(files)) {
				fmt.Fprintf(&got, "=== %s\n%s", strings.TrimPrefix(p, out+"/"), files[p])
			}
			got.WriteString("=== warnings\n")
			for _, w := range res.Warnings {
				fmt.Fprintln(&got, w)
			}
			golden.Check(t, filepath.Join(dir, "want.txt"), []byte(got.String()))
			if len(res.Endpoints) == 0 {
				return
			}
			tmp := t.TempDir()
			if _, err := res.Write(tmp, false); err != nil {
				t.Fatal(err)
			}
			v, err := schema.Load(schema.Options{SkipFiles: true}, tmp)
			if err != nil || len(v.Diagnostics) > 0 {
				t.Errorf("the converted files do not validate: %v %v", err, v.Diagnostics)
			}
		})
	}
}

func convertCase(t *testing.T, dir string) *Result {
	o := Options{BaseDir: "/etc/ngrok"}
	if data, err := os.ReadFile(filepath.Join(dir, "ngrok.yml")); err == nil {
		res, err := FromConfig("ngrok.yml", data, o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	data, err := os.ReadFile(filepath.Join(dir, "args"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := FromArgs(strings.Fields(string(data)), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
