package watch

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// RootRevision is the revision a configuration root is at: the HEAD commit of the git
// work tree holding it (dirty when the root's files differ from that commit), or else the
// first line of a REVISION file at the root, as a CI job or a ConfigMap can carry.
type RootRevision struct {
	Path     string `json:"path"`
	Revision string `json:"revision,omitempty"`
	Dirty    bool   `json:"dirty,omitempty"`
	Source   string `json:"source,omitempty"` // git or REVISION
}

// maxRevision bounds what a REVISION file may make tlsd show.
const maxRevision = 200

// gitTimeout bounds each git command: a reload never waits long on one.
const gitTimeout = 5 * time.Second

// Revisions reads the revision of each root. It asks the git binary (as `git rev-parse`
// and `git status` do for an operator): it reads every layout git writes (plain clones,
// worktrees as git-sync makes them, a detached HEAD, packed refs) without tlsd carrying
// a second implementation of git's formats; without git, or outside a work tree, the
// REVISION file is the answer.
func Revisions(roots []string) []RootRevision {
	out := make([]RootRevision, 0, len(roots))
	for _, root := range roots {
		out = append(out, revisionOf(root))
	}
	return out
}

// Overall is the roots' revision when they all have the same one, and whether any is
// dirty.
func Overall(roots []RootRevision) (rev string, dirty bool) {
	for i, r := range roots {
		if i == 0 {
			rev = r.Revision
		} else if r.Revision != rev {
			rev = ""
		}
		dirty = dirty || r.Dirty
	}
	return rev, dirty
}

func revisionOf(root string) RootRevision {
	r := RootRevision{Path: root}
	dir := root
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		dir = filepath.Dir(root)
	}
	if head, ok := git(dir, "rev-parse", "--verify", "HEAD"); ok && head != "" {
		r.Revision, r.Source = head, "git"
		spec := "."
		if dir != root {
			spec = filepath.Base(root)
		}
		status, ok := git(dir, "status", "--porcelain", "--", spec)
		r.Dirty = !ok || status != ""
		return r
	}
	if rev := revisionFile(filepath.Join(dir, "REVISION")); rev != "" {
		r.Revision, r.Source = rev, "REVISION"
	}
	return r
}

// git runs git in dir and returns its trimmed output, and whether it succeeded.
func git(dir string, args ...string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0") // a status must not take the index lock from a pull
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err == nil
}

// revisionFile is the first line of path, bounded, or "".
func revisionFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	line = strings.TrimSpace(line)
	if len(line) > maxRevision {
		line = line[:maxRevision]
	}
	return line
}
