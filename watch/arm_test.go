package watch

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// TestForcedArmRestoresLostWatches: a forced arm (what a reload request, SIGHUP, does)
// re-adds every watch, so a watch lost behind tlsd's back is restored.
func TestForcedArmRestoresLostWatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "# nothing yet\n")
	w, err := newWatcher([]string{dir}, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	w.arm(nil, false)
	if err := w.fsw.Remove(dir); err != nil {
		t.Fatal(err)
	} // the watch is gone; the watcher still counts it
	w.arm(nil, false)
	write(t, filepath.Join(dir, "b.yaml"), "# unseen\n")
	if seen(w, filepath.Join(dir, "b.yaml"), 300*time.Millisecond) {
		t.Fatal("the lost watch still reports events: this test cannot see its loss")
	}
	w.arm(nil, true)
	write(t, filepath.Join(dir, "c.yaml"), "# seen\n")
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
