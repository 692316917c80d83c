package watch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTarget records what the loop applies and the failed loads it reports.
type fakeTarget struct {
	mu      sync.Mutex
	cfg     *schema.Config
	gen     uint64
	applies int
	failed  []schema.Diagnostics
	changed chan struct{} // a signal per Apply or RecordFailedLoad
}

func newFakeTarget(cfg *schema.Config) *fakeTarget {
	return &fakeTarget{cfg: cfg, gen: 1, changed: make(chan struct{}, 100)}
}

func (f *fakeTarget) Apply(cfg *schema.Config) (reconcile.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.applies = cfg, f.applies+1
	f.gen++
	f.changed <- struct{}{}
	return reconcile.Plan{}, nil
}

func (f *fakeTarget) RecordFailedLoad(d schema.Diagnostics, _ error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, d)
	f.changed <- struct{}{}
}

func (f *fakeTarget) Generation() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.gen }

func (f *fakeTarget) Config() *schema.Config { f.mu.Lock(); defer f.mu.Unlock(); return f.cfg }

// until waits, change by change, for cond; a loaded machine may take long, so the
// deadline only ends a test that would otherwise hang.
func (f *fakeTarget) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("never: %s", what)
		}
	}
}

func (f *fakeTarget) endpoints() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		return 0
	}
	return len(f.cfg.Endpoints)
}

func endpoint(name string) string {
	return fmt.Sprintf("apiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s.test\nupstream: 127.0.0.1:9000\n", name, name)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log the loop writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// running is a Watcher over dir serving a fake target, stopped at the test's end.
type running struct {
	target *fakeTarget
	log    *syncBuffer
	done   chan int
}

func start(t *testing.T, dir string, rl Reload) *running {
	t.Helper()
	res, err := schema.Load(schema.Options{}, dir)
	if err != nil || res.Config == nil {
		t.Fatalf("initial load: %v %v", err, res.Diagnostics)
	}
	r := &running{target: newFakeTarget(res.Config), log: &syncBuffer{}, done: make(chan int, 1)}
	w, err := New(Options{Paths: []string{dir}, Logger: slog.New(slog.NewTextHandler(r.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.Arm(res.Config)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- w.Run(ctx, r.target, rl) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		w.Close()
	})
	return r
}

// TestReloadsIntoTarget: a new file is applied, a broken one is reported and applies
// nothing, and fixing it applies again.
func TestReloadsIntoTarget(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), endpoint("a"))
	r := start(t, dir, Reload{})
	write(t, filepath.Join(dir, "b.yaml"), endpoint("b"))
	r.target.until(t, "b applied", func() bool { return r.target.endpoints() == 2 })
	write(t, filepath.Join(dir, "c.yaml"), "apiVersion: tlsd/v1\nkind: Endpoint\nname: c\n")
	r.target.until(t, "the broken file reported", func() bool { r.target.mu.Lock(); defer r.target.mu.Unlock(); return len(r.target.failed) > 0 })
	if n := r.target.endpoints(); n != 2 {
		t.Errorf("%d endpoints after a broken file, want the 2 running", n)
	}
	write(t, filepath.Join(dir, "c.yaml"), endpoint("c"))
	r.target.until(t, "c applied", func() bool { return r.target.endpoints() == 3 })
}

// TestManyFilesOneReload: files written together are loaded as one snapshot, not one
// reload each.
func TestManyFilesOneReload(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), endpoint("a"))
	r := start(t, dir, Reload{Debounce: 300 * time.Millisecond, DebounceCap: 5 * time.Second})
	for i := range 20 {
		write(t, filepath.Join(dir, fmt.Sprintf("n%02d.yaml", i)), endpoint(fmt.Sprintf("n%02d", i)))
	}
	r.target.until(t, "all 21 applied", func() bool { return r.target.endpoints() == 21 })
	r.target.mu.Lock()
	defer r.target.mu.Unlock()
	if r.target.applies >= 10 {
		t.Errorf("%d reloads for 20 files written together: the events were not debounced", r.target.applies)
	}
}

// TestFileBeingWrittenIsHeld: a file still open for writing is not loaded half-written;
// once its writer closes it, the whole of it is applied.
func TestFileBeingWrittenIsHeld(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), endpoint("a"))
	r := start(t, dir, Reload{})
	f, err := os.Create(filepath.Join(dir, "b.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(endpoint("b") + "---\n")
	waitLog(t, r.log, "reload waits: a file is being written")
	f.WriteString(endpoint("c"))
	f.Close()
	r.target.until(t, "b and c applied together", func() bool { return r.target.endpoints() == 3 })
	r.target.mu.Lock()
	defer r.target.mu.Unlock()
	if len(r.target.failed) > 0 {
		t.Errorf("the half-written file was loaded: %v", r.target.failed)
	}
}

// TestRequestedReloadAndUpgrade: a reload request reloads at once and tells the service
// manager; an upgrade request that hands over ends Run with the new process's PID.
func TestRequestedReloadAndUpgrade(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), endpoint("a"))
	reload, upgrade := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var notes []string
	r := start(t, dir, Reload{Requests: reload, Upgrade: upgrade, HandOver: func() (int, bool) { return 4242, true },
		Notify: func(s string) { mu.Lock(); notes = append(notes, s); mu.Unlock() }})
	reload <- struct{}{}
	r.target.until(t, "the requested reload applied", func() bool { return r.target.Generation() == 2 })
	upgrade <- struct{}{}
	if pid := <-r.done; pid != 4242 {
		t.Errorf("Run returned %d after the hand-over, want the new PID 4242", pid)
	}
	r.done <- 0 // for the cleanup
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(notes) != "[RELOADING=1 READY=1]" {
		t.Errorf("service manager told %q", notes)
	}
}

func waitLog(t *testing.T, log *syncBuffer, text string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !bytes.Contains([]byte(log.String()), []byte(text)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", text, log)
		}
	}
}

// TestChangeWhileFirstReadIsNotLost: a watcher made before the configuration is first
// read sees a change made after that read and before Run, and Run applies it (the
// kernel queued the event). Watches armed after the read lost such a change for good.
func TestChangeWhileFirstReadIsNotLost(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), endpoint("a"))
	w, err := New(Options{Paths: []string{dir}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := schema.Load(schema.Options{}, dir)
	if err != nil || res.Config == nil {
		t.Fatalf("initial load: %v %v", err, res.Diagnostics)
	}
	write(t, filepath.Join(dir, "b.yaml.tmp"), endpoint("b"))
	if err := os.Rename(filepath.Join(dir, "b.yaml.tmp"), filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	w.Arm(res.Config)
	target := newFakeTarget(res.Config)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- w.Run(ctx, target, Reload{}) }()
	defer func() { cancel(); <-done }()
	target.until(t, "b, renamed in after the first read, applied", func() bool { return target.endpoints() == 2 })
}
