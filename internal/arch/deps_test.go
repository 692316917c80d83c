package arch

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tlsd/tlsd"

// imports lists, for every package of the module, the module's packages it imports
// directly (tests not counted), relative to the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	all := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := rel(fields[0])
		all[pkg] = []string{}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, module+"/") {
				all[pkg] = append(all[pkg], rel(imp))
			}
		}
	}
	return all
}

func rel(pkg string) string { return strings.TrimPrefix(pkg, module+"/") }

// allowed is the layout's arrows: what each package may import from the module. The data
// plane (edge, upstream, relay, termination, the tunnel's tree) takes plain values and
// never sees the configuration; edge and upstream are two halves that share relay and
// termination but not each other, and neither knows the tunnel, whose handlers the
// daemon plugs into them; internal/ serves development only. ARCHITECTURE.md says the
// same in prose: TestArchitectureNamesEveryPackage keeps the two together.
var allowed = map[string][]string{
	"cmd/tlsd":      {"admin", "certs", "daemon", "iprange", "localca", "ngrok", "reconcile", "report", "schema", "statestore", "tunnel", "version", "watch"},
	"daemon":        {"admin", "autocert", "certs", "edge", "iprange", "localca", "reconcile", "relay", "schema", "statestore", "termination", "tunnel", "tunnel/client", "tunnel/server", "upstream", "version", "watch"},
	"admin":         {"edge", "schema", "tunnel/client", "tunnel/server", "upstream", "version"},
	"watch":         {"reconcile", "schema"},
	"reconcile":     {"schema"},
	"report":        {"schema"},
	"ngrok":         {"schema"},
	"schema":        {"certs", "iprange"},
	"edge":          {"iprange", "relay", "termination"},
	"upstream":      {"relay", "termination"},
	"tunnel/server": {"relay", "tunnel"},
	"tunnel/client": {"relay", "tunnel"},
	"tunnel":        {"certs"},
	"termination":   {"relay"},
	"relay":         {},
	"iprange":       {},
	"autocert":      {"certs", "termination"},
	"localca":       {"certs"},
	"statestore":    {"certs", "termination"},
	"certs":         {},
	"version":       {},

	"bench":                      {"internal/testpki"},
	"bench/cmd/benchrun":         {"bench"},
	"bench/cmd/tlsload":          {"bench", "certs"},
	"internal/arch":              {},
	"internal/badhello":          {},
	"internal/cmd/demo-upstream": {"internal/testpki"},
	"internal/doctest":           {},
	"internal/golden":            {},
	"internal/testpki":           {},
	"internal/testpebble":        {"certs", "internal/testport"},
	"internal/testport":          {},
	"internal/testknot":          {"internal/testport"},
	"internal/testredis":         {"internal/testport"},
}

// TestDependencyArrows fails when a package imports one the layout does not allow it, and
// when a package has no place in the layout yet.
func TestDependencyArrows(t *testing.T) {
	for pkg, imps := range imports(t) {
		want, known := allowed[pkg]
		if !known {
			t.Errorf("package %s has no entry in the layout (internal/arch allowed): give it its arrows", pkg)
			continue
		}
		for _, imp := range imps {
			if !slices.Contains(want, imp) {
				t.Errorf("%s imports %s, against the layout", pkg, imp)
			}
		}
	}
}

// deps lists every package pkg depends on, transitively, as `go list -deps` sees it.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestForbiddenDependencies holds what the arrows cannot say: the data plane reads no
// YAML and watches no files, desired state knows no sockets, and the binary carries
// nothing from internal/.
func TestForbiddenDependencies(t *testing.T) {
	yaml, watch := "go.yaml.in/yaml/v3", "github.com/fsnotify/fsnotify"
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{module + "/edge", []string{yaml, watch}},
		{module + "/upstream", []string{yaml, watch}},
		{module + "/schema", []string{watch}},
		{module + "/reconcile", []string{watch}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			if slices.Contains(r.forbidden, d) {
				t.Errorf("%s depends on %s", r.pkg, d)
			}
		}
	}
	for _, d := range deps(t, module+"/cmd/tlsd") {
		if strings.HasPrefix(d, module+"/internal/") {
			t.Errorf("the tlsd binary depends on %s: internal/ is for development only", d)
		}
	}
}

// TestYamuxOnlyInTheTunnel: the multiplexer is the tunnel's business. No package outside
// the tunnel's tree (tunnel, tunnel/server, tunnel/client) imports it, and none but those that wire or show the tunnel (daemon, admin,
// the binary) depends on it at all.
func TestYamuxOnlyInTheTunnel(t *testing.T) {
	const yamux = "github.com/hashicorp/yamux"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	wiring := []string{"daemon", "admin", "cmd/tlsd"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := rel(fields[0])
		if pkg == "tunnel" || strings.HasPrefix(pkg, "tunnel/") {
			continue
		}
		if slices.Contains(fields[1:], yamux) {
			t.Errorf("%s imports yamux: only the tunnel's packages may", pkg)
		}
		if !slices.Contains(wiring, pkg) && slices.Contains(deps(t, fields[0]), yamux) {
			t.Errorf("%s depends on yamux", pkg)
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

// TestArchitectureNamesEveryPackage: ARCHITECTURE.md's package table names every package
// of the module, and no package that is gone.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	doc, err := os.ReadFile("../../ARCHITECTURE.md")
	if err != nil {
		t.Fatalf("ARCHITECTURE.md: %v", err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if cell, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `") {
			for _, name := range strings.Split(cell, ", ") {
				listed[strings.Trim(name, "`")] = true
			}
		}
	}
	pkgs := imports(t)
	for pkg := range pkgs {
		if !listed[pkg] {
			t.Errorf("package %s is not in ARCHITECTURE.md's table: give it a line saying its one job", pkg)
		}
	}
	for name := range listed {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("ARCHITECTURE.md lists %s, which is no package of the module", name)
		}
	}
}
