package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tlsd/tlsd"

// deps lists every package pkg depends on, transitively, as `go list -deps` sees it.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestDependencyArrows fails when a package imports something above it in the layout.
func TestDependencyArrows(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		// The data plane takes plain route values: no YAML, no reconciling, no watching.
		{module + "/edge/...", []string{module + "/schema", module + "/reconcile", module + "/runtime", "github.com/fsnotify/fsnotify", "go.yaml.in/yaml/v3"}},
		{module + "/agent/...", []string{module + "/schema", module + "/reconcile", module + "/runtime", "github.com/fsnotify/fsnotify", "go.yaml.in/yaml/v3"}},
		// Desired state and planning know nothing of sockets or the live process.
		{module + "/schema/...", []string{module + "/reconcile", module + "/runtime", module + "/edge", module + "/agent", "github.com/fsnotify/fsnotify"}},
		{module + "/reconcile/...", []string{module + "/runtime", module + "/edge", module + "/agent", "github.com/fsnotify/fsnotify"}},
		// Shared helpers are imported downward only.
		{module + "/certs/...", []string{module + "/schema", module + "/reconcile", module + "/runtime", module + "/edge", module + "/agent"}},
		{module + "/runtime/...", []string{module + "/cmd/tlsd"}},
	}
	for _, r := range rules {
		got := map[string]bool{}
		for _, d := range deps(t, r.pkg) {
			got[d] = true
		}
		for _, f := range r.forbidden {
			if got[f] {
				t.Errorf("%s depends on %s", r.pkg, f)
			}
		}
	}
}

// TestEveryPackageHasADocComment keeps `go doc` useful for every package.
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no package doc comment", path)
		}
	}
}
