package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

func TestPlanOffline(t *testing.T) {
	old := writeConfig(t, validEndpoint)
	same := writeConfig(t, validEndpoint)
	changed := writeConfig(t, strings.Replace(validEndpoint, "127.0.0.1:9000", "127.0.0.1:9001", 1))
	invalid := writeConfig(t, invalidEndpoint)
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"no changes", []string{"plan", old, same}, 0, "No changes"},
		{"changes", []string{"plan", old, changed}, 3, "~ upstream: 127.0.0.1:9000 -> 127.0.0.1:9001"},
		{"json", []string{"plan", "--format", "json", old, changed}, 3, `"action": "change"`},
		{"invalid new side", []string{"plan", old, invalid}, 1, ""},
		{"one path without --admin", []string{"plan", old}, 2, ""},
		{"missing path", []string{"plan", old, filepath.Join(old, "nope")}, 2, ""},
		{"bad format", []string{"plan", "--format", "yaml", old, same}, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := tlsd(t, c.args...)
			if code != c.code || !strings.Contains(out, c.out) {
				t.Errorf("tlsd %v = %d\n%s%s", c.args, code, out, stderr)
			}
		})
	}
	_, out, _ := tlsd(t, "plan", "--format", "json", old, changed)
	var p struct {
		Endpoints []struct{ Name, Action string }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Endpoints) != 1 || p.Endpoints[0].Action != "change" {
		t.Errorf("plan JSON = %s (%v)", out, err)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	code, _, stderr := tlsd(t, "status", "--admin", freeAddr(t))
	if code != 2 || !strings.Contains(stderr, "is it running") {
		t.Errorf("status with nothing listening: exit %d, %s", code, stderr)
	}
}

// certDir writes an edge endpoint with its own certificate files under dir.
func certDir(t *testing.T, dir string, ca *testpki.Pair) {
	t.Helper()
	leaf, err := ca.Issue(testpki.Options{CommonName: "a.example.com", DNSNames: []string{"a.example.com"}})
	mustT(t, err)
	mustT(t, os.MkdirAll(filepath.Join(dir, "certs"), 0o700))
	mustT(t, leaf.WriteFiles(filepath.Join(dir, "certs", "a.crt"), filepath.Join(dir, "certs", "a.key")))
	cfg := validEndpoint + "terminate_at: edge\ntls:\n  certificate: {crt: certs/a.crt, key: certs/a.key}\n"
	mustT(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(cfg), 0o644))
}

// TestPlanComparesMeaning: a copy of a directory is no change, from any working
// directory; a certificate rotated under the same file names is a content change.
func TestPlanComparesMeaning(t *testing.T) {
	ca, err := testpki.NewCA("plan CA", time.Time{}, time.Time{})
	mustT(t, err)
	top := t.TempDir()
	certDir(t, filepath.Join(top, "cfg"), ca)
	mustT(t, exec.Command("cp", "-r", filepath.Join(top, "cfg"), filepath.Join(top, "cfg2")).Run())
	t.Chdir(top)
	if code, out, errOut := tlsd(t, "plan", "cfg", "cfg2"); code != 0 || !strings.Contains(out, "No changes") {
		t.Errorf("plan of a copy: exit %d\n%s%s", code, out, errOut)
	}
	t.Chdir(filepath.Join(top, "cfg"))
	if code, out, errOut := tlsd(t, "plan", ".", "../cfg2"); code != 0 {
		t.Errorf("plan of a copy from inside it: exit %d\n%s%s", code, out, errOut)
	}
	certDir(t, filepath.Join(top, "cfg2"), ca) // a new certificate and key, same names
	code, out, _ := tlsd(t, "plan", ".", "../cfg2")
	if code != 3 || !strings.Contains(out, "~ tls.certificate: content ") || strings.Contains(out, "certificate.crt") {
		t.Errorf("plan of a rotated certificate: exit %d\n%s", code, out)
	}
}

// TestPlanAdminComparesMeaning: plan --admin gives the same answer from any working
// directory as tlsd run was started from another one, takes run's PATH list, and counts
// the open connections a change would send draining.
func TestPlanAdminComparesMeaning(t *testing.T) {
	ca, err := testpki.NewCA("plan CA", time.Time{}, time.Time{})
	mustT(t, err)
	up := holdingUpstream(t)
	top := t.TempDir()
	certDir(t, filepath.Join(top, "conf", "a"), ca)
	aFile := filepath.Join(top, "conf", "a", "a.yaml")
	a, _ := os.ReadFile(aFile)
	mustT(t, os.WriteFile(aFile, []byte(strings.Replace(string(a), "127.0.0.1:9000", up.Addr().String(), 1)), 0o644))
	b := strings.NewReplacer("name: a", "name: b", "a.example.com", "b.example.com").Replace(validEndpoint)
	mustT(t, os.WriteFile(filepath.Join(top, "conf", "b.yaml"), []byte(b), 0o644))
	addr, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(os.Args[0], "run", "--listen", addr, "--admin", admin, "--state-dir", "state", "conf/a", "conf/b.yaml")
	cmd.Dir, cmd.Env = top, append(os.Environ(), "TLSD_TEST_MAIN=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	mustT(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	conn := dialUntilServed(t, addr, "a.example.com", out)
	defer conn.Close()

	t.Chdir(filepath.Join(top, "conf", "a"))
	if code, plan, errOut := tlsd(t, "plan", "--admin", admin, ".", "../b.yaml"); code != 0 || !strings.Contains(plan, "No changes") {
		t.Errorf("plan --admin from inside the checkout: exit %d\n%s%s", code, plan, errOut)
	}
	code, plan, _ := tlsd(t, "plan", "--admin", admin, ".")
	if code != 3 || !strings.Contains(plan, `- endpoint "b"`) || !strings.Contains(plan, "(0 connections open now)") ||
		strings.Contains(plan, `~ endpoint "a"`) || !strings.Contains(plan, "Running at "+admin+": revision unknown, digest ") ||
		!strings.Contains(plan, "these files are of no known revision") {
		t.Errorf("plan --admin without b.yaml: exit %d\n%s", code, plan)
	}
	mustT(t, os.WriteFile(aFile, []byte(strings.Replace(validEndpoint, "127.0.0.1:9000", up.Addr().String(), 1)+"terminate_at: edge\ntls: {issuer: internal}\n"), 0o644))
	code, plan, _ = tlsd(t, "plan", "--admin", admin, ".", "../b.yaml")
	if code != 3 || !strings.Contains(plan, `~ endpoint "a"`) || !strings.Contains(plan, "(1 connection open now)") {
		t.Errorf("plan --admin with a changed: exit %d\n%s", code, plan)
	}
}
