package runtime

import (
	"io"
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

// TestForcedArmRestoresLostWatches: a forced arm (what a reload request, SIGHUP, does)
// re-adds every watch, so a watch lost behind tlsd's back is restored.
func TestForcedArmRestoresLostWatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "# nothing yet\n")
	w, err := newWatcher([]string{dir}, "", slogTo(io.Discard))
	must(t, err)
	defer w.close()
	w.arm(nil, false)
	must(t, w.fsw.Remove(dir)) // the watch is gone; the watcher still counts it
	w.arm(nil, false)
	writeFile(t, filepath.Join(dir, "b.yaml"), "# unseen\n")
	if seen(w, filepath.Join(dir, "b.yaml"), 300*time.Millisecond) {
		t.Fatal("the lost watch still reports events: this test cannot see its loss")
	}
	w.arm(nil, true)
	writeFile(t, filepath.Join(dir, "c.yaml"), "# seen\n")
	if !seen(w, filepath.Join(dir, "c.yaml"), 5*time.Second) {
		t.Error("a forced arm did not restore the lost watch")
	}
}

// seen waits up to timeout for an event on path.
func seen(w *watcher, path string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-w.fsw.Events:
			if ev.Name == path {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
