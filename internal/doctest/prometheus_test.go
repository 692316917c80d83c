package doctest

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertingRules checks deploy/prometheus's rules with promtool and runs their unit
// tests: each alert fires on the series it is for, after its for: duration, with its
// labels and annotations, and not on the others.
func TestAlertingRules(t *testing.T) {
	promtool := promtoolPath(t)
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "tlsd-rules.yml"}, {"test", "rules", "tlsd-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

func promtoolPath(t *testing.T) string {
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is required (apt-get install prometheus; .ci/run installs it)")
	}
	return p
}
