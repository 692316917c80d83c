package watch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestRevisions: a root in a git work tree has its HEAD commit, dirty once a file under
// it differs (a change elsewhere in the repository does not count); a worktree and a
// detached HEAD read the same way; without git, the REVISION file's first line.
func TestRevisions(t *testing.T) {
	repo := t.TempDir()
	gitRun(t, repo, "init", "-q")
	root := filepath.Join(repo, "endpoints")
	write(t, filepath.Join(repo, "README"), "x\n")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "a.yaml"), endpoint("a"))
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "one")
	head := gitRun(t, repo, "rev-parse", "HEAD")
	check := func(name, path, rev string, dirty bool) {
		t.Helper()
		got := Revisions([]string{path})[0]
		if got.Revision != rev || got.Dirty != dirty {
			t.Errorf("%s: %+v, want revision %q dirty %v", name, got, rev, dirty)
		}
	}
	check("clean", root, head, false)
	write(t, filepath.Join(repo, "README"), "changed elsewhere\n")
	check("a change outside the root", root, head, false)
	write(t, filepath.Join(root, "b.yaml"), endpoint("b"))
	check("a new file under the root", root, head, true)
	check("a file root", filepath.Join(root, "a.yaml"), head, false)
	wt := filepath.Join(t.TempDir(), "wt")
	gitRun(t, repo, "worktree", "add", "-q", "--detach", wt, head)
	check("a detached worktree", filepath.Join(wt, "endpoints"), head, false)

	plain := t.TempDir()
	write(t, filepath.Join(plain, "REVISION"), "build-42\nmore\n")
	if got := Revisions([]string{plain})[0]; got.Revision != "build-42" || got.Source != "REVISION" {
		t.Errorf("REVISION file: %+v", got)
	}
	if got := Revisions([]string{t.TempDir()})[0]; got.Revision != "" {
		t.Errorf("no git, no REVISION: %+v", got)
	}
}
