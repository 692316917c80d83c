package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tlsd/tlsd/schema"
)

// reloader turns file events and reload requests into reloads: debounced, held while a
// file is being written, and logged so an operator reads each thing once.
type reloader struct {
	d   target
	log *slog.Logger
	w   *watcher
	o   RunOptions

	// handOver, when set, runs on an upgrade request; it returns the new process's PID
	// and true when this process should stop serving.
	handOver func() (int, bool)

	failing bool            // the last attempt failed
	warned  map[string]bool // the warnings of the last load, already logged
	waiting string          // the files the last held reload waited for, as logged
}

func newReloader(d target, log *slog.Logger, w *watcher, o RunOptions) *reloader {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.DebounceCap <= 0 {
		o.DebounceCap = DefaultDebounceCap
	}
	r := &reloader{d: d, log: log, w: w, o: o, warned: map[string]bool{}}
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
		case <-r.o.Reload:
			notifySystemd("RELOADING=1")
			fire(whyRequested, true)
			notifySystemd("READY=1")
		case <-r.o.Upgrade:
			if r.handOver == nil {
				r.log.Warn("upgrade requested: this command does not hand over its sockets yet")
			} else if pid, done := r.handOver(); done {
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
	r.o.TunnelPKI.Reload(r.log) // new sessions use new tunnel credentials; no generation needed
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
	res, err := schema.Load(r.o.Load, r.o.Paths...)
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
