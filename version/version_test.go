package version

import (
	"strings"
	"testing"
)

func TestStampedBuild(t *testing.T) {
	stamp, revision, date = "v1.2.3", "0123456789abcdef0123", "2026-12-01T12:00:00Z"
	t.Cleanup(func() { stamp, revision, date = "", "", "" })
	i := Get()
	if i.Version != "v1.2.3" || i.Revision != "0123456789abcdef0123" || i.Time != "2026-12-01T12:00:00Z" || i.GoVersion == "" {
		t.Errorf("Get = %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "v1.2.3 0123456789ab 2026-12-01T12:00:00Z go") {
		t.Errorf("String = %q", s)
	}
}

func TestUnstampedBuild(t *testing.T) {
	if i := Get(); i.Version == "" || i.GoVersion == "" {
		t.Errorf("Get = %+v: a build says at least devel and its Go", i)
	}
}
