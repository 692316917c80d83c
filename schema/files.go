package schema

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// configFiles lists the YAML files named by paths: files as given, directories searched
// recursively for *.yaml and *.yml. Names starting with "." are skipped, which also skips a
// Kubernetes ConfigMap mount's "..data" internals, while the visible symlinks into them are
// followed. Files and directories matching an exclude pattern (see Options.Exclude) are
// left out. The result is sorted per argument and free of duplicates.
func configFiles(paths, exclude []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if !fi.IsDir() {
			out = appendNew(out, seen, p)
			continue
		}
		w := &dirWalk{root: p, exclude: exclude, visiting: map[string]bool{}}
		found, err := w.walk(p)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("read config: no *.yaml or *.yml files under %s", p)
		}
		for _, f := range found {
			out = appendNew(out, seen, f)
		}
	}
	return out, nil
}

func appendNew(out []string, seen map[string]bool, p string) []string {
	clean := filepath.Clean(p)
	if seen[clean] {
		return out
	}
	seen[clean] = true
	return append(out, p)
}

// dirWalk finds the configuration files below one root.
type dirWalk struct {
	root     string
	exclude  []string
	visiting map[string]bool // real paths of the directories being walked: no cycles
}

// walk follows symlinks to directories, guarding against cycles by real path.
func (w *dirWalk) walk(dir string) ([]string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("read config directory %s: %w", dir, err)
	}
	if w.visiting[real] {
		return nil, nil
	}
	w.visiting[real] = true
	defer delete(w.visiting, real)

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read config directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") || w.excluded(p) {
			continue
		}
		isDir, isFile := e.IsDir(), e.Type().IsRegular()
		if e.Type()&os.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			if err != nil {
				continue // dangling link: a ConfigMap mid-swap or an editor's lock file
			}
			isDir, isFile = fi.IsDir(), fi.Mode().IsRegular()
		}
		switch {
		case isDir:
			sub, err := w.walk(p)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case isFile && isYAMLName(e.Name()):
			out = append(out, p)
		}
	}
	return out, nil
}

// excluded reports whether p matches a pattern: one with a slash against the path
// relative to the root, one without against the name alone, as .gitignore does.
func (w *dirWalk) excluded(p string) bool {
	rel, err := filepath.Rel(w.root, p)
	if err != nil {
		return false
	}
	rel = filepath.ToSlash(rel)
	for _, pat := range w.exclude {
		target := rel
		if !strings.Contains(pat, "/") {
			target = filepath.Base(p)
		}
		if ok, _ := path.Match(strings.TrimPrefix(pat, "/"), target); ok {
			return true
		}
	}
	return false
}

// ValidExclude reports a malformed exclude pattern.
func ValidExclude(pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("exclude pattern %q: %w", pattern, err)
	}
	return nil
}

func isYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return slices.Contains([]string{".yaml", ".yml"}, ext)
}

// resolvePath makes a path written in a document relative to that document's file.
func resolvePath(docFile, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(docFile), p)
}
