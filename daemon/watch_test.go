package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/watch"
)

// runDir runs the whole daemon (load, watch, reload) on dir until the test ends.
func (e *env) runDir(dir string, opts ...func(*RunOptions)) {
	e.t.Helper()
	res, err := schema.Load(schema.Options{}, dir)
	must(e.t, err)
	if res.Config == nil {
		e.t.Fatalf("initial config: %v", res.Diagnostics)
	}
	started := make(chan *Daemon, 1)
	o := RunOptions{
		Options: Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, HandshakeTimeout: 5 * time.Second,
			Logger: slogTo(e.log), Bind: e.sockets.bind},
		Paths: []string{dir}, Admin: "off", ShutdownTimeout: 5 * time.Second,
		Started: func(d *Daemon) { started <- d }, InitialWarnings: res.Diagnostics,
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, res.Config, o) }()
	select {
	case e.d = <-started:
	case err := <-done:
		cancel()
		e.t.Fatalf("Run: %v", err)
	}
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
}

// waitGeneration waits until the daemon serves generation want.
func (e *env) waitGeneration(want uint64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.d.Generation() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.d.Generation(); got != want {
		e.t.Fatalf("generation %d, want %d\n%s", got, want, e.log.String())
	}
}

// settle waits well past the debounce cap and checks the generation did not move.
func (e *env) settle(want uint64) {
	e.t.Helper()
	time.Sleep(watch.DefaultDebounceCap + 300*time.Millisecond)
	if got := e.d.Generation(); got != want {
		e.t.Fatalf("generation %d after settling, want exactly %d", got, want)
	}
}

func endpointFile(name, upstream string) string {
	return yamlEndpoint(name, name+".test", upstream, "edge", "  issuer: internal\n")
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

// serves reports whether tlsd completes a handshake for name.
func (e *env) serves(name string) bool {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e.d.Addr("") == nil {
			return false // no endpoint left on the default listener
		}
		c, err := e.dialTLS(&tls.Config{ServerName: name, InsecureSkipVerify: true})
		switch {
		case err == nil:
			c.Close()
			return true
		case strings.Contains(err.Error(), "unrecognized name"), time.Now().After(deadline):
			return false // tlsd's answer for a name it does not route
		}
		// Anything else (a dial or handshake cut short on a loaded machine) is no answer
		// yet: ask again.
	}
}

func TestWatchEditorSaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("conf")
	writeFile(t, filepath.Join(dir, "a.yaml"), endpointFile("a", up.addr()))
	e.runDir(dir)
	gen := e.d.Generation()

	t.Run("vim-style write and rename", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, ".a.yaml.swp"), "swap file noise")
		writeFile(t, filepath.Join(dir, "a.yaml.tmp~"), endpointFile("a", up.addr())+endpointFile("b", up.addr()))
		must(t, os.Rename(filepath.Join(dir, "a.yaml.tmp~"), filepath.Join(dir, "a.yaml")))
		gen++
		e.waitGeneration(gen)
		if !e.serves("b.test") {
			t.Error("b.test not served after the save")
		}
	})
	t.Run("truncate then write", func(t *testing.T) {
		f, err := os.OpenFile(filepath.Join(dir, "a.yaml"), os.O_WRONLY|os.O_TRUNC, 0)
		must(t, err)
		f.WriteString(endpointFile("a", up.addr()))
		f.WriteString(endpointFile("c", up.addr()))
		f.Close()
		gen++
		e.waitGeneration(gen)
		e.settle(gen)
		if !e.serves("c.test") || e.serves("b.test") {
			t.Error("c.test should be served and b.test gone")
		}
	})
	t.Run("file in a new subdirectory", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "team", "new", "d.yaml"), endpointFile("d", up.addr()))
		gen++
		e.waitGeneration(gen)
		writeFile(t, filepath.Join(dir, "team", "new", "e.yaml"), endpointFile("e", up.addr()))
		gen++
		e.waitGeneration(gen)
		if !e.serves("e.test") {
			t.Error("a file added later to the new subdirectory was missed")
		}
	})
	t.Run("half-written file, then fixed", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "f.yaml"), "apiVersion: tlsd/v1\nkind: Endpoint\nname: f\ndomain: f.test\nupstream: 127.0.0.1:")
		e.settle(gen)
		if st := e.d.Status(); st.LastAttempt.OK || len(st.LastAttempt.Diagnostics) == 0 {
			t.Errorf("status after a broken file: %+v", st.LastAttempt)
		}
		e.log.waitFor(t, "reload failed: the configuration has errors")
		if !e.serves("a.test") {
			t.Error("the running generation stopped serving after a broken file")
		}
		writeFile(t, filepath.Join(dir, "f.yaml"), endpointFile("f", up.addr()))
		gen++
		e.waitGeneration(gen)
		if !e.d.Status().LastAttempt.OK {
			t.Error("status still failed after the fix")
		}
	})
	t.Run("directory deleted and recreated", func(t *testing.T) {
		must(t, os.RemoveAll(dir))
		e.settle(gen)
		if !e.serves("a.test") {
			t.Error("stopped serving when the directory vanished")
		}
		writeFile(t, filepath.Join(dir, "z.yaml"), endpointFile("z", up.addr()))
		gen++
		e.waitGeneration(gen)
		if !e.serves("z.test") || e.serves("a.test") {
			t.Error("the recreated directory is not what is served")
		}
	})
}

// TestWatchGitCheckout: switching branches rewrites 50 files; that is one generation.
func TestWatchGitCheckout(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("repo")
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for i := range 50 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("svc-%02d.yaml", i)), endpointFile(fmt.Sprintf("svc-%02d", i), up.addr()))
	}
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-qm", "main")
	git("checkout", "-qb", "next")
	for i := range 50 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("svc-%02d.yaml", i)), endpointFile(fmt.Sprintf("svc-%02d", i), up.addr())+"upstream_proxy_protocol: v1\n")
	}
	git("commit", "-qam", "next")
	git("checkout", "-q", "main")
	e.runDir(dir)
	gen := e.d.Generation()
	git("checkout", "-q", "next")
	e.waitGeneration(gen + 1)
	e.settle(gen + 1)
	for _, ep := range e.d.Config().Endpoints {
		if ep.UpstreamProxyProtocol != "v1" {
			t.Fatalf("endpoint %s is from the old branch", ep.Name)
		}
	}
}

// TestWatchConfigMapSwap reproduces a Kubernetes ConfigMap update: a new timestamped
// directory, then the ..data symlink swapped to it by rename.
func TestWatchConfigMapSwap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("cm")
	writeFile(t, filepath.Join(dir, "..2026_01", "app.yaml"), endpointFile("v1", up.addr()))
	must(t, os.Symlink("..2026_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/app.yaml", filepath.Join(dir, "app.yaml")))
	e.runDir(dir)
	gen := e.d.Generation()
	writeFile(t, filepath.Join(dir, "..2026_02", "app.yaml"), endpointFile("v2", up.addr()))
	must(t, os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..2026_01")))
	e.waitGeneration(gen + 1)
	if !e.serves("v2.test") || e.serves("v1.test") {
		t.Error("the ConfigMap update was not applied")
	}
}

// TestWatchCertificateRotation: a certificate replaced in place, then by rename, in a
// directory outside the configuration; new handshakes see each new certificate.
func TestWatchCertificateRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	certDir := e.path("certs")
	must(t, os.MkdirAll(certDir, 0o700))
	crt, key := filepath.Join(certDir, "a.crt"), filepath.Join(certDir, "a.key")
	issue := func(crtPath, keyPath string) *testpki.Pair {
		p, err := e.agentCA.Issue(testpki.Options{CommonName: "a.test", DNSNames: []string{"a.test"}})
		must(t, err)
		must(t, p.WriteFiles(crtPath, keyPath))
		return p
	}
	issue(crt, key)
	dir := e.path("conf")
	writeFile(t, filepath.Join(dir, "a.yaml"), yamlEndpoint("a", "a.test", up.addr(), "edge",
		fmt.Sprintf("  certificate: {crt: %s, key: %s}\n", crt, key)))
	e.runDir(dir)
	gen := e.d.Generation()
	served := func() string {
		c, err := e.dialTLS(&tls.Config{ServerName: "a.test", RootCAs: pool(e.agentCA)})
		must(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	t.Run("in place", func(t *testing.T) {
		p := issue(crt, key)
		gen++
		e.waitGeneration(gen)
		if served() != p.Cert.SerialNumber.String() {
			t.Error("the rotated certificate is not served")
		}
	})
	t.Run("by rename", func(t *testing.T) {
		p := issue(crt+".new", key+".new")
		must(t, os.Rename(key+".new", key))
		must(t, os.Rename(crt+".new", crt))
		gen++
		e.waitGeneration(gen)
		if served() != p.Cert.SerialNumber.String() {
			t.Error("the renamed-in certificate is not served")
		}
	})
	t.Run("unrelated file beside it", func(t *testing.T) {
		before := e.d.Status().LastAttempt.At
		writeFile(t, filepath.Join(certDir, "renew.log"), "a log line")
		writeFile(t, filepath.Join(certDir, "a.crt.bak"), "a backup")
		e.settle(gen)
		if after := e.d.Status().LastAttempt.At; !after.Equal(before) {
			t.Errorf("files beside a certificate caused a reload (last attempt %v, before %v)", after, before)
		}
	})
	_ = strings.Contains
}

// A --state-dir inside the configuration directory is tlsd's own: its writes there
// (the local CA, ACME certificates, locks) must not reload, nor files beside the
// configuration directory, while any other write in it does.
func TestWatchIgnoresStateDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("conf")
	e.stateDir = filepath.Join(dir, "state")
	writeFile(t, filepath.Join(dir, "a.yaml"), endpointFile("a", up.addr()))
	e.runDir(dir)
	attempt := func() time.Time { return e.d.Status().LastAttempt.At }
	first := attempt()
	writeFile(t, filepath.Join(e.stateDir, "acme", "new.crt"), "written by tlsd")
	writeFile(t, filepath.Join(e.stateDir, "lock"), "written by tlsd")
	writeFile(t, filepath.Join(filepath.Dir(dir), "tlsd.log"), "beside the configuration directory")
	e.settle(1)
	if got := attempt(); !got.Equal(first) {
		t.Fatalf("a write in the state directory or beside the configuration caused a reload (last attempt %v, first %v)", got, first)
	}
	writeFile(t, filepath.Join(dir, "notes.txt"), "written by an operator")
	deadline := time.Now().Add(5 * time.Second)
	for attempt().Equal(first) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if attempt().Equal(first) {
		t.Fatal("a write beside the configuration caused no reload: this test cannot see reloads")
	}
}
