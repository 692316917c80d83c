package doctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on deploy/systemd's service and
// socket units (with ExecStart pointing at an executable that exists here): no error and
// no warning, such as a misspelt key, which verify reports without failing.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: .ci/run installs systemd")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"tlsd.service", "tlsd.socket"} {
		unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, filepath.Join(dir, name))
		if err := os.WriteFile(units[len(units)-1], []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/tlsd", self)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestPreCommitHooks: the repository offers the validate hook built from source and one
// for machines with tlsd installed, the same command in both.
func TestPreCommitHooks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", ".pre-commit-hooks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hooks []struct {
		ID, Entry, Language string
		Args                []string
	}
	if err := yaml.Unmarshal(data, &hooks); err != nil {
		t.Fatal(err)
	}
	languages := map[string]string{}
	for _, h := range hooks {
		if h.Entry != "tlsd validate" || len(h.Args) == 0 {
			t.Errorf("hook %s runs %q %v, want tlsd validate with a path", h.ID, h.Entry, h.Args)
		}
		languages[h.Language] = h.ID
	}
	if languages["golang"] != "tlsd-validate" || languages["system"] != "tlsd-validate-system" {
		t.Errorf("hooks by language %v, want tlsd-validate (golang) and tlsd-validate-system (system)", languages)
	}
}
