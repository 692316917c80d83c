package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitIn runs git in dir and returns its trimmed output.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=ci",
		"GIT_COMMITTER_EMAIL=ci@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (name -> content, "" removes it) into the repository and commits.
func commit(t *testing.T, repo, msg string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(repo, name)
		if content == "" {
			mustT(t, os.Remove(path))
			continue
		}
		mustT(t, os.WriteFile(path, []byte(content), 0o644))
	}
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", msg)
	return gitIn(t, repo, "rev-parse", "HEAD")
}

func endpointDoc(name, upstream string) string {
	return fmt.Sprintf("apiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s.test\nupstream: %s\n", name, name, upstream)
}

// TestDeployWaitRevision is the README's deploy pipeline with two daemons, each on its own
// checkout: a commit pulled on both is confirmed live with --wait-revision; a broken
// commit makes it exit 1 with the diagnostics while the old revision serves on; a
// rollback (git reset --hard) is reported as the old revision and digest again.
func TestDeployWaitRevision(t *testing.T) {
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	mustT(t, os.MkdirAll(origin, 0o755))
	gitIn(t, origin, "init", "-q", "-b", "main")
	up := echo(t, nil)
	rev1 := commit(t, origin, "one endpoint", map[string]string{"a.yaml": endpointDoc("a", up)})
	var admins []string
	var checkouts []string
	for _, name := range []string{"edge-a", "edge-b"} {
		co := filepath.Join(dir, name)
		gitIn(t, dir, "clone", "-q", origin, co)
		adminAddr := freeAddr(t)
		_, out := tlsdProcess(t, "run", "--listen", freeAddr(t), "--admin", adminAddr, "--state-dir", filepath.Join(dir, name+"-state"), co)
		waitOutput(t, out, "serving configuration", "revision="+rev1)
		admins, checkouts = append(admins, "--admin", adminAddr), append(checkouts, co)
	}
	waitFor := func(rev, timeout string) (int, string) {
		code, stdout, stderr := tlsd(t, append(append([]string{"status"}, admins...), "--wait-revision", rev, "--timeout", timeout)...)
		return code, stdout + stderr
	}
	wait := func(rev string) (int, string) { return waitFor(rev, "60s") }
	pull := func() {
		for _, co := range checkouts {
			gitIn(t, co, "pull", "-q", "--ff-only")
		}
	}

	if code, out := wait(rev1[:7]); code != 0 || !strings.Contains(out, "live on 2 of 2") {
		t.Fatalf("the first revision: exit %d\n%s", code, out)
	}
	rev2 := commit(t, origin, "a second endpoint", map[string]string{"b.yaml": endpointDoc("b", up)})
	pull()
	if code, out := wait(rev2); code != 0 || !strings.Contains(out, "live on 2 of 2") {
		t.Fatalf("after a pull: exit %d\n%s", code, out)
	}
	digest2 := statusDigest(t, admins[1])
	rev3 := commit(t, origin, "broken", map[string]string{"broken.yaml": "apiVersion: tlsd/v1\nkind: Endpoint\nname: broken\n"})
	pull()
	code, out := wait(rev3)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "missing-field") || !strings.Contains(out, "still serves revision "+rev2) {
		t.Fatalf("a broken commit: exit %d, want 1 with the diagnostics\n%s", code, out)
	}
	rev4 := commit(t, origin, "fixed, and a third endpoint", map[string]string{"broken.yaml": "", "c.yaml": endpointDoc("c", up)})
	pull()
	if code, out := wait(rev4); code != 0 {
		t.Fatalf("the fix: exit %d\n%s", code, out)
	}
	for _, co := range checkouts {
		gitIn(t, co, "reset", "-q", "--hard", rev2)
	}
	if code, out := wait(rev2); code != 0 {
		t.Fatalf("the rollback: exit %d\n%s", code, out)
	}
	if got := statusDigest(t, admins[1]); got != digest2 {
		t.Errorf("after the rollback the digest is %s, want %s again (same tree)", got, digest2)
	}
	if code, out := waitFor("0000000", "1s"); code != exitTimeout {
		t.Errorf("a revision nobody serves: exit %d, want %d\n%s", code, exitTimeout, out)
	} else if !strings.Contains(out, "live on 0 of 2") {
		t.Errorf("timeout output:\n%s", out)
	}
}

func statusDigest(t *testing.T, addr string) string {
	t.Helper()
	var st struct{ Config struct{ Digest string } }
	mustT(t, getJSON(addr, "/status", &st))
	return st.Config.Digest
}
