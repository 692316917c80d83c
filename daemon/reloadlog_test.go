package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReloadLogsEachThingOnce: a warning is logged once while it lasts, not on every
// reload (a git checkout has 0644 keys); a reload that succeeds after failures says the
// failure is over.
func TestReloadLogsEachThingOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("conf")
	must(t, os.MkdirAll(dir, 0o755))
	e.leaf(e.agentCA, "conf/ag", "ag.test")
	must(t, os.Chmod(filepath.Join(dir, "ag.key"), 0o644))
	writeFile(t, filepath.Join(dir, "ag.yaml"), yamlEndpoint("ag", "ag.test", up.addr(), "agent", "  certificate: {crt: ag.crt, key: ag.key}\n"))
	writeFile(t, filepath.Join(dir, "a.yaml"), endpointFile("a", up.addr()))
	e.runDir(dir)
	count := func(s string) int { return strings.Count(e.log.String(), s) }
	for i, name := range []string{"b", "c", "d"} {
		writeFile(t, filepath.Join(dir, name+".yaml"), endpointFile(name, up.addr()))
		e.waitGeneration(uint64(i + 2))
	}
	if n := count("key-permissions"); n != 0 {
		t.Errorf("a warning known at start was logged %d times by 3 reloads", n)
	}
	before := e.d.Status().LastAttempt.At
	must(t, os.Chmod(filepath.Join(dir, "ag.key"), 0o600)) // the warning goes...
	if !eventually(5*time.Second, func() bool { return e.d.Status().LastAttempt.At.After(before) }) {
		t.Fatal("no reload after the key's mode changed")
	}
	must(t, os.Chmod(filepath.Join(dir, "ag.key"), 0o644)) // ...and comes back
	e.log.waitFor(t, "key-permissions")
	writeFile(t, filepath.Join(dir, "e.yaml"), endpointFile("e", up.addr()))
	e.waitGeneration(5)
	if n := count("key-permissions"); n != 1 {
		t.Errorf("a warning that came back was logged %d times, want once", n)
	}

	writeFile(t, filepath.Join(dir, "broken.yaml"), "apiVersion: tlsd/v1\nkind: Endpoint\nname: broken\n")
	e.log.waitFor(t, "reload failed: the configuration has errors")
	must(t, os.Remove(filepath.Join(dir, "broken.yaml")))
	e.log.waitFor(t, "reload succeeded: the configuration is valid again")
}

// TestShrinkReturnsMemory: a reload that leaves less than half of a large configuration
// returns the freed memory at once (BenchmarkShrinkGivesMemoryBack measures how much),
// and one that keeps most of it does not force a collection.
func TestShrinkReturnsMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	endpoints := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(yamlEndpoint(fmt.Sprintf("ep-%d", i), fmt.Sprintf("ep-%d.test", i), "127.0.0.1:9000", "", ""))
		}
		return b.String()
	}
	e.start(endpoints(300))
	for _, n := range []int{200, 1} {
		writeFile(t, e.path("endpoints.yaml"), endpoints(n))
		_, err := e.d.Apply(loadConfig(t, e.path("endpoints.yaml")))
		must(t, err)
	}
	line := e.log.waitFor(t, "configuration shrank; freed memory returned to the OS")
	if !strings.Contains(line, "endpoints_before=200 endpoints_after=1") || strings.Count(e.log.String(), "configuration shrank") != 1 {
		t.Errorf("want one collection, for 200 -> 1 endpoints (not for 300 -> 200):\n%s", e.log)
	}
}
