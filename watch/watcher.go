package watch

import (
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tlsd/tlsd/schema"
)

// watcher watches directories, never files: editors and Kubernetes replace files by
// rename or symlink swap, which a watch on the file itself would lose. It watches every
// directory the loader reads, the parent of each root (so a root deleted and recreated is
// seen), and the directories of the files the configuration references.
type watcher struct {
	fsw     *fsnotify.Watcher
	writers *writers // which files are open for writing
	roots   []string
	// stateDir is tlsd's own (--state-dir): when it lies inside the configuration
	// directory, tlsd's writes there (the local CA, ACME certificates, locks) must not
	// trigger reloads. "" if unknown.
	stateDir string
	log      *slog.Logger
	// watched maps each watched directory to what it was when the watch was added: a
	// directory replaced under the same name (a root deleted and recreated, a symlink
	// re-pointed) is watched anew.
	watched map[string]os.FileInfo
	// emptySince is when a file that holds documents of the running configuration was
	// first found empty; such a file is held (see holdFor) before its endpoints go.
	emptySince map[string]time.Time
	// configDirs are the directories the loader reads: any change there may change the
	// configuration. refs are the roots and the files the configuration references: in
	// the other watched directories (the roots' parents, those of certificates) only
	// those matter, so that a log or a backup written beside them reloads nothing.
	configDirs map[string]bool
	// extra are files watched whatever the configuration says: the tunnel's.
	extra []string
	refs  map[string]bool
}

func newWatcher(roots []string, stateDir string, log *slog.Logger, extra ...string) (*watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	wr, err := newWriters()
	if err != nil {
		fsw.Close()
		return nil, err
	}
	if stateDir != "" {
		if abs, err := filepath.Abs(stateDir); err == nil {
			stateDir = abs
		}
	}
	return &watcher{fsw: fsw, writers: wr, roots: roots, stateDir: stateDir, log: log, extra: extra,
		watched: map[string]os.FileInfo{}, emptySince: map[string]time.Time{}}, nil
}

// relevant reports whether a file event on path can change the configuration: anything
// in a configuration directory, a referenced file, or Kubernetes' "..data" symlink swap
// beside one; never tlsd's own state directory.
func (w *watcher) relevant(path string) bool {
	path = filepath.Clean(path)
	switch {
	case w.ignored(path):
		return false
	case w.configDirs[filepath.Dir(path)], w.refs[path]:
		return true
	}
	return strings.HasPrefix(filepath.Base(path), "..")
}

// ignored reports whether path is tlsd's state directory or inside it.
func (w *watcher) ignored(path string) bool {
	if w.stateDir == "" {
		return false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	return abs == w.stateDir || strings.HasPrefix(abs, w.stateDir+string(filepath.Separator))
}

func (w *watcher) close() error { return errors.Join(w.fsw.Close(), w.writers.close()) }

// arm brings the watch list up to date with the directory tree and cfg's references.
// Call it before and after every load attempt: new subdirectories appear between loads,
// and a symlinked root may point elsewhere now. force re-adds every watch (SIGHUP).
func (w *watcher) arm(cfg *schema.Config, force bool) {
	want := map[string]bool{}
	for _, root := range w.roots {
		if fi, err := os.Stat(root); err == nil && fi.IsDir() {
			w.walkDirs(root, want, map[string]bool{})
		}
	}
	w.configDirs = maps.Clone(want)
	w.refs = map[string]bool{}
	for _, root := range w.roots {
		// The parent is watched so that a root deleted and recreated is seen; only
		// events on the root itself count there.
		want[filepath.Dir(filepath.Clean(root))] = true
		w.refs[filepath.Clean(root)] = true
	}
	for _, f := range append(referencedFiles(cfg), w.extra...) {
		want[filepath.Dir(f)] = true
		w.refs[filepath.Clean(f)] = true
	}
	for dir := range w.watched {
		if !want[dir] {
			w.unwatch(dir)
		}
	}
	for dir := range want {
		w.watch(dir, force)
	}
}

// watch adds a watch on dir unless it already watches that very directory.
func (w *watcher) watch(dir string, force bool) {
	fi, err := os.Stat(dir)
	if err != nil {
		w.unwatch(dir)
		return
	}
	if old, ok := w.watched[dir]; ok && !force && os.SameFile(old, fi) {
		return
	}
	if _, ok := w.watched[dir]; ok {
		w.log.Debug("directory replaced or re-pointed; watching it anew", "dir", dir)
		w.unwatch(dir)
	}
	if err := w.fsw.Add(dir); err != nil {
		w.log.Debug("cannot watch directory", "dir", dir, "error", err)
		return
	}
	if err := w.writers.watch(dir); err != nil {
		w.log.Debug("cannot follow writers in directory", "dir", dir, "error", err)
	}
	w.watched[dir] = fi
}

// noteGone forgets the watch of a watched directory that was removed or renamed away, so
// the next arm watches whatever has its name then. (Its inode number may come back at
// once for a directory made anew, so comparing inodes alone would miss it.)
func (w *watcher) noteGone(ev fsnotify.Event) {
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if _, ok := w.watched[filepath.Clean(ev.Name)]; ok {
			w.unwatch(filepath.Clean(ev.Name))
		}
	}
}

func (w *watcher) unwatch(dir string) {
	w.fsw.Remove(dir) // fails harmlessly when the directory, and so its watch, is gone
	w.writers.unwatch(dir)
	delete(w.watched, dir)
}

// walkDirs adds dir and its subdirectories the loader would read (no dot-names),
// following symlinks to directories once, and leaving out the state directory.
func (w *watcher) walkDirs(dir string, out, seen map[string]bool) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil || seen[real] || w.ignored(dir) {
		return
	}
	seen[real] = true
	out[dir] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			w.walkDirs(p, out, seen)
		} else if e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				w.walkDirs(p, out, seen)
			}
		}
	}
}

// referencedFiles lists the certificate, key and CA files of cfg.
func referencedFiles(cfg *schema.Config) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	for _, ep := range cfg.Endpoints {
		if c := ep.TLS.Certificate; c != nil {
			out = append(out, c.Crt, c.Key)
		}
		if m := ep.TLS.MutualTLS; m != nil {
			out = append(out, m.CertificateAuthorities...)
		}
	}
	for _, is := range cfg.Issuers {
		out = append(out, is.ACME.CARoots...)
	}
	return out
}
