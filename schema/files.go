package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// configFiles lists the YAML files named by paths: files as given, directories searched
// recursively for *.yaml and *.yml. Names starting with "." are skipped, which also skips a
// Kubernetes ConfigMap mount's "..data" internals, while the visible symlinks into them are
// followed. The result is sorted per argument and free of duplicates.
func configFiles(paths []string) ([]string, error) {
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
		found, err := walkConfigDir(p, map[string]bool{})
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

// walkConfigDir follows symlinks to directories, guarding against cycles by real path.
func walkConfigDir(dir string, visiting map[string]bool) ([]string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("read config directory %s: %w", dir, err)
	}
	if visiting[real] {
		return nil, nil
	}
	visiting[real] = true
	defer delete(visiting, real)

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read config directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
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
			sub, err := walkConfigDir(p, visiting)
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
