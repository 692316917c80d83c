// Package watch turns a configuration on disk into reloads: it watches the directories
// the loader reads (new subdirectories included), the roots' parents and the directories
// of referenced files; follows symlinked roots; holds a reload while a file is being
// written; debounces a burst of events into one snapshot; re-arms every watch on a
// reload request (SIGHUP); and hands each valid snapshot to a Target, reporting invalid
// ones to it. It knows nothing of sockets: tlsd run, edge and agent are its Targets.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tlsd/tlsd/reconcile"
	"github.com/tlsd/tlsd/schema"
)

// Debounce defaults: a `git pull` touching many files becomes one reload of one
// consistent snapshot.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultDebounceCap = time.Second
)

const whyRequested = "reload requested"

// Target is what the loop applies configurations to: the daemon of tlsd run and tlsd
// edge, or the agent's.
type Target interface {
	Apply(*schema.Config) (reconcile.Plan, error)
	RecordFailedLoad(schema.Diagnostics, error)
	Generation() uint64
	Config() *schema.Config
}

// Options say what a Watcher watches.
type Options struct {
	Paths []string // the configuration's roots, as the loader is given them
	// StateDir is tlsd's own (--state-dir): its writes there never reload anything.
	StateDir string
	// Extra are files watched whatever the configuration says (the tunnel's
	// credentials): a change to them reloads.
	Extra  []string
	Logger *slog.Logger
}

// Reload says how a Watcher reloads its target.
type Reload struct {
	Load        schema.Options  // how to load the roots
	Debounce    time.Duration   // quiet period after the last file event; 0: DefaultDebounce
	DebounceCap time.Duration   // longest wait after the first event; 0: DefaultDebounceCap
	Requests    <-chan struct{} // e.g. SIGHUP: reload now, re-arming every watch
	// Upgrade (SIGUSR2) calls HandOver, which returns the new process's PID and true
	// when this process should stop serving; Run then returns that PID.
	Upgrade  <-chan struct{}
	HandOver func() (int, bool)
	// InitialWarnings are the warnings of the initial configuration, already logged: a
	// reload logs a warning only when it is new.
	InitialWarnings schema.Diagnostics
	// BeforeReload runs at the start of every reload attempt (the tunnel's credentials
	// are read again there); Notify tells the service manager of a requested reload
	// ("RELOADING=1", then "READY=1"). Both may be nil.
	BeforeReload func()
	Notify       func(state string)
}

// Watcher watches the configuration and reloads it into a Target.
type Watcher struct {
	w     *watcher
	o     Options
	close sync.Once
}

// New watches the roots at once: make it before the configuration is first read, so
// that a change made while it is read is an event the first Run sees (the kernel queues
// it), never lost between that read and the watches.
func New(o Options) (*Watcher, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w, err := newWatcher(o.Paths, o.StateDir, o.Logger, o.Extra...)
	if err != nil {
		return nil, err
	}
	w.arm(nil, false)
	return &Watcher{w: w, o: o}, nil
}

// Arm brings the watches up to date with the directories and cfg's references: call it
// with the initial configuration before Run.
func (x *Watcher) Arm(cfg *schema.Config) { x.w.arm(cfg, false) }

// Run reloads t on every change until ctx ends (it returns 0) or an upgrade handed this
// process's sockets over (it returns the new process's PID).
func (x *Watcher) Run(ctx context.Context, t Target, r Reload) int {
	return newReloader(t, x.w, x.o, r).loop(ctx)
}

// Close stops watching; later calls do nothing.
func (x *Watcher) Close() error {
	var err error
	x.close.Do(func() { err = x.w.close() })
	return err
}

// reloader turns file events and reload requests into reloads: debounced, held while a
// file is being written, and logged so an operator reads each thing once.
type reloader struct {
	d     Target
	log   *slog.Logger
	w     *watcher
	paths []string
	o     Reload

	failing bool            // the last attempt failed
	warned  map[string]bool // the warnings of the last load, already logged
	waiting string          // the files the last held reload waited for, as logged
}

func newReloader(d Target, w *watcher, wo Options, o Reload) *reloader {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.DebounceCap <= 0 {
		o.DebounceCap = DefaultDebounceCap
	}
	if o.BeforeReload == nil {
		o.BeforeReload = func() {}
	}
	if o.Notify == nil {
		o.Notify = func(string) {}
	}
	r := &reloader{d: d, log: wo.Logger, w: w, paths: wo.Paths, o: o, warned: map[string]bool{}}
	for _, diag := range o.InitialWarnings {
		r.warned[warningKey(diag)] = true
	}
	return r
}

// loop waits for file events (debounced), writers closing files, held reloads coming
// due and reload and upgrade requests, until ctx ends or an upgrade handed this
// process's sockets over; then it returns the new process's PID.
func (r *reloader) loop(ctx context.Context) int {
	quiet, capTimer, retry := stoppedTimer(), stoppedTimer(), stoppedTimer()
	pending := false
	event := func() {
		quiet.Reset(r.o.Debounce)
		if !pending {
			pending = true
			capTimer.Reset(r.o.DebounceCap)
		}
	}
	fire := func(why string, force bool) {
		quiet.Stop()
		capTimer.Stop()
		retry.Stop()
		pending = false
		if wait := r.reload(why, force); wait > 0 {
			retry.Reset(wait)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-r.o.Requests:
			r.o.Notify("RELOADING=1")
			fire(whyRequested, true)
			r.o.Notify("READY=1")
		case <-r.o.Upgrade:
			if r.o.HandOver == nil {
				r.log.Warn("upgrade requested: this command does not hand over its sockets yet")
			} else if pid, done := r.o.HandOver(); done {
				return pid
			}
		case ev, ok := <-r.w.fsw.Events:
			if !ok {
				return 0
			}
			r.w.noteGone(ev)
			if r.w.relevant(ev.Name) { // not tlsd's own state, nor a file beside a certificate
				r.log.Debug("file event", "event", ev.String())
				event()
			}
		case <-r.w.writers.closed:
			paths, lost := r.w.writers.takeClosed()
			if lost || slices.ContainsFunc(paths, r.w.relevant) {
				r.log.Debug("a writer closed a configuration file", "files", paths)
				event()
			}
		case err, ok := <-r.w.fsw.Errors:
			if !ok {
				return 0
			}
			// A lost event (queue overflow) may hide a change: reload to be sure.
			r.log.Warn("file watcher error; reloading to be safe", "error", err)
			fire("watcher error", true)
		case <-quiet.C:
			fire("files changed", false)
		case <-capTimer.C:
			fire("files keep changing", false)
		case <-retry.C:
			fire("waited for files being written", false)
		}
	}
}

// heldKey names what a held reload waits for, without the ages that change every time.
func heldKey(reasons []string) string {
	var b strings.Builder
	for _, r := range reasons {
		path, _, _ := strings.Cut(r, " is open for writing")
		path, _, _ = strings.Cut(path, " became empty")
		b.WriteString(path + "\n")
	}
	return b.String()
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// reload loads the configuration and applies it if valid; otherwise the running
// generation stays and the diagnostics go to the log and /status. While a file is being
// written nothing is loaded: it returns how long to wait at most before trying again.
func (r *reloader) reload(why string, force bool) time.Duration {
	start := time.Now()
	r.o.BeforeReload()
	// Watch new directories before reading them, so a file written into a new
	// subdirectory right after this load still raises an event.
	r.w.arm(r.d.Config(), force)
	if wait, files := r.w.holdFor(r.d.Config(), start); wait > 0 {
		level := slog.LevelInfo
		if key := heldKey(files); key == r.waiting {
			level = slog.LevelDebug // a writer's every write raises an event: say it once
		} else {
			r.waiting = key
		}
		r.log.Log(context.Background(), level, "reload waits: a file is being written; the running configuration stays meanwhile",
			"why", why, "files", files, "at_most", wait.Round(time.Millisecond))
		return wait
	}
	r.waiting = ""
	cfg := r.load(why)
	if cfg == nil {
		r.w.arm(r.d.Config(), false)
		return 0
	}
	before := r.d.Generation()
	if _, err := r.d.Apply(cfg); err != nil {
		r.failed("reload failed; still serving generation "+fmt.Sprint(before), "why", why, "error", err)
	} else {
		r.applied(why, before, start)
	}
	r.w.arm(cfg, false)
	return 0
}

// load reads and validates the configuration; nil means it is not one to apply (the
// failure is logged and recorded).
func (r *reloader) load(why string) *schema.Config {
	res, err := schema.Load(r.o.Load, r.paths...)
	if err != nil {
		r.d.RecordFailedLoad(nil, err)
		r.failed("reload failed; still serving generation "+fmt.Sprint(r.d.Generation()), "why", why, "error", err)
		return nil
	}
	r.logDiagnostics(res.Diagnostics)
	if res.Config == nil {
		r.d.RecordFailedLoad(res.Diagnostics, nil)
		r.failed("reload failed: the configuration has errors; still serving generation "+fmt.Sprint(r.d.Generation()), "why", why)
	}
	return res.Config
}

// logDiagnostics logs every error, and each warning once while it lasts: a repository
// checked out by git has world-readable keys, and every reload would say so again.
func (r *reloader) logDiagnostics(ds schema.Diagnostics) {
	now := map[string]bool{}
	for _, diag := range ds {
		key := warningKey(diag)
		if diag.Severity == schema.SeverityWarning {
			now[key] = true
			if r.warned[key] {
				continue
			}
		}
		r.log.Warn("configuration "+string(diag.Severity), "at", fmt.Sprintf("%s:%d:%d", diag.File, diag.Line, diag.Column),
			"code", diag.Code, "message", diag.Message)
	}
	r.warned = now
}

func warningKey(d schema.Diagnostic) string {
	return fmt.Sprintf("%s:%d:%d %s %s", d.File, d.Line, d.Column, d.Code, d.Message)
}

func (r *reloader) failed(msg string, attrs ...any) {
	r.failing = true
	r.log.Error(msg, attrs...)
}

func (r *reloader) applied(why string, before uint64, start time.Time) {
	if r.failing {
		r.failing = false
		r.log.Info("reload succeeded: the configuration is valid again", "why", why, "generation", r.d.Generation())
	}
	if r.d.Generation() != before {
		r.log.Info("reload applied", "why", why, "generation", r.d.Generation(), "took", time.Since(start).Round(time.Microsecond))
		return
	}
	level := slog.LevelDebug
	if why == whyRequested {
		level = slog.LevelInfo // an operator asked: answer
	}
	r.log.Log(context.Background(), level, "reload: nothing changed", "why", why, "generation", before)
}
