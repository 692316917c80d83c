package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// repoint swaps the symlink link to target atomically, as `ln -sfn` does.
func repoint(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".new"
	must(t, os.Symlink(target, tmp))
	must(t, os.Rename(tmp, link))
}

// TestRootFollowed: the configuration root is followed wherever it points now, in the
// three layouts operators deploy with.
func TestRootFollowed(t *testing.T) {
	t.Parallel()
	t.Run("symlinked root re-pointed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		up := newEchoServer(t, nil)
		r1, r2 := e.path("releases/r1"), e.path("releases/r2")
		writeFile(t, filepath.Join(r1, "a.yaml"), endpointFile("a", up.addr()))
		writeFile(t, filepath.Join(r2, "a.yaml"), endpointFile("a", up.addr())+endpointFile("b", up.addr()))
		current := e.path("current")
		must(t, os.Symlink(r1, current))
		e.runDir(current)
		repoint(t, current, r2)
		e.waitGeneration(2)
		writeFile(t, filepath.Join(r2, "c.yaml"), endpointFile("c", up.addr()))
		e.waitGeneration(3)
		if !e.serves("c.test") {
			t.Error("an edit inside the new target is not served")
		}
		writeFile(t, filepath.Join(r1, "old.yaml"), endpointFile("old", up.addr()))
		e.settle(3)
	})
	t.Run("symlinked subdirectory re-pointed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		up := newEchoServer(t, nil)
		dir := e.path("conf")
		writeFile(t, filepath.Join(dir, "a.yaml"), endpointFile("a", up.addr()))
		v1, v2 := e.path("teams/v1"), e.path("teams/v2")
		writeFile(t, filepath.Join(v1, "t.yaml"), endpointFile("t1", up.addr()))
		writeFile(t, filepath.Join(v2, "t.yaml"), endpointFile("t2", up.addr()))
		must(t, os.Symlink(v1, filepath.Join(dir, "team")))
		e.runDir(dir)
		repoint(t, filepath.Join(dir, "team"), v2)
		e.waitGeneration(2)
		writeFile(t, filepath.Join(v2, "u.yaml"), endpointFile("u2", up.addr()))
		e.waitGeneration(3)
		if !e.serves("u2.test") || e.serves("t1.test") {
			t.Error("the re-pointed subdirectory is not what is served")
		}
	})
	t.Run("root deleted and recreated, files arriving later", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		up := newEchoServer(t, nil)
		dir := e.path("srv")
		writeFile(t, filepath.Join(dir, "a.yaml"), endpointFile("a", up.addr()))
		e.runDir(dir)
		// rm -rf srv && git clone ... srv: within one debounce, then the clone's files
		// land later.
		must(t, os.RemoveAll(dir))
		must(t, os.Mkdir(dir, 0o755))
		e.log.waitFor(t, "reload failed", "no *.yaml or *.yml files under")
		time.Sleep(1500 * time.Millisecond) // the clone is slow
		must(t, os.MkdirAll(filepath.Join(dir, "team"), 0o755))
		writeFile(t, filepath.Join(dir, "team", "b.yaml"), endpointFile("b", up.addr()))
		e.waitGeneration(2)
		if !e.serves("b.test") || e.serves("a.test") {
			t.Error("the recreated root is not what is served")
		}
	})
}
