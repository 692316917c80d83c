package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tlsd/tlsd/schema"
)

// A file still being written is not a configuration: a reload waits for it, and the
// running generation, that file's endpoints included, serves meanwhile.
const (
	// WriteWait bounds the wait for a file open for writing (written to since a writer
	// last closed it): a writer that keeps a file open longer gets it loaded as it is.
	WriteWait = 10 * time.Second
	// EmptyHold is how long a file that held documents of the running configuration may
	// be empty before its endpoints go: a shell redirect or a generator truncates first
	// and writes later. A file that stays empty longer is taken at its word.
	EmptyHold = 2 * time.Second
)

// holdFor says whether the next load must wait, at most how long, and why.
func (w *watcher) holdFor(running *schema.Config, now time.Time) (time.Duration, []string) {
	var wait time.Duration
	var why []string
	hold := func(left time.Duration, reason string) {
		if wait == 0 || left < wait {
			wait = left
		}
		why = append(why, reason)
	}
	for path, since := range w.writers.openFiles() {
		if age := now.Sub(since); w.configFile(path) && age < WriteWait {
			hold(WriteWait-age, fmt.Sprintf("%s is open for writing (for %s)", path, age.Round(time.Millisecond)))
		}
	}
	for _, path := range filesWithDocuments(running) {
		if since, empty := w.emptyFor(path, now); empty && now.Sub(since) < EmptyHold {
			hold(EmptyHold-now.Sub(since), fmt.Sprintf("%s became empty (%s ago)", path, now.Sub(since).Round(time.Millisecond)))
		}
	}
	slices.Sort(why)
	return wait, why
}

// configFile reports whether path is a file the configuration is read from or refers to.
func (w *watcher) configFile(path string) bool {
	name := filepath.Base(path)
	return w.refs[path] || w.configDirs[filepath.Dir(path)] && !strings.HasPrefix(name, ".") &&
		(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

// emptyFor reports whether path is an empty file now, and since when it has been seen so.
func (w *watcher) emptyFor(path string, now time.Time) (time.Time, bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 0 {
		delete(w.emptySince, path) // gone (that is a removal) or written again
		return time.Time{}, false
	}
	since, ok := w.emptySince[path]
	if !ok {
		since = now
		w.emptySince[path] = since
	}
	return since, true
}

// filesWithDocuments lists the files that endpoints and issuers of cfg come from.
func filesWithDocuments(cfg *schema.Config) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	for _, ep := range cfg.Endpoints {
		out = append(out, filepath.Clean(ep.Pos.File))
	}
	for _, is := range cfg.Issuers {
		out = append(out, filepath.Clean(is.Pos.File))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
