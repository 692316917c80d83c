// Package version says which build of tlsd this is: the version stamped at build time
// (make build does), else the module's, and the VCS revision and time Go recorded.
package version

import (
	"cmp"
	"runtime/debug"
	"strings"
)

// Set at build time (make build does), for builds where Go records no VCS data:
//
//	-ldflags "-X github.com/tlsd/tlsd/version.stamp=v1.2.3
//	          -X github.com/tlsd/tlsd/version.revision=COMMIT -X github.com/tlsd/tlsd/version.date=TIME"
var stamp, revision, date string

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`            // v1.2.3, a git describe, or "devel"
	Revision  string `json:"revision,omitempty"` // the VCS commit
	Time      string `json:"time,omitempty"`     // the commit's time
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	GoVersion string `json:"go_version"`
}

// Get reads what the build recorded.
func Get() Info {
	info := Info{Version: stamp, Revision: revision, Time: date}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return withDefault(info)
	}
	info.GoVersion = bi.GoVersion
	if info.Version == "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = cmp.Or(info.Revision, s.Value)
		case "vcs.time":
			info.Time = cmp.Or(info.Time, s.Value)
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return withDefault(info)
}

func withDefault(i Info) Info {
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is the one line `tlsd version` prints: version, revision, time, Go.
func (i Info) String() string {
	parts := []string{i.Version}
	if i.Revision != "" {
		rev := i.Revision[:min(12, len(i.Revision))]
		if i.Modified {
			rev += "-modified"
		}
		parts = append(parts, rev)
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	return strings.Join(append(parts, i.GoVersion), " ")
}
