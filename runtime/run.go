package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/tlsd/tlsd/schema"
)

// Debounce defaults: a `git pull` touching many files becomes one reload of one
// consistent snapshot.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultDebounceCap = time.Second
)

const whyRequested = "reload requested"

// RunOptions configure Run.
type RunOptions struct {
	Options
	Paths           []string       // what to load and watch
	Load            schema.Options // how to load it
	Admin           string         // admin API address, or "off"
	ShutdownTimeout time.Duration
	Debounce        time.Duration   // quiet period after the last file event; 0: DefaultDebounce
	DebounceCap     time.Duration   // longest wait after the first event; 0: DefaultDebounceCap
	Reload          <-chan struct{} // e.g. SIGHUP: reload now
	Started         func(*Daemon)   // called once the first generation serves (tests)
}

// Run serves initial, then watches the configuration and applies every valid change
// without dropping connections, until ctx ends; then it drains for ShutdownTimeout.
func Run(ctx context.Context, initial *schema.Config, o RunOptions) error {
	var adminLn net.Listener
	if enabled, loopback, err := CheckAdminAddr(o.Admin); err != nil {
		return err
	} else if enabled {
		if adminLn, err = net.Listen("tcp", o.Admin); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		if !loopback {
			o.Logger.Warn("the admin API is reachable beyond this machine", "address", o.Admin)
		}
	}
	d, err := Start(initial, o.Options)
	if err != nil {
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	w, err := newWatcher(o.Paths, d.log)
	if err != nil {
		d.Shutdown(context.Background())
		return fmt.Errorf("watch configuration: %w", err)
	}
	defer w.close()
	w.arm(initial)
	actx, stopAdmin := context.WithCancel(context.Background())
	adminDone := make(chan error, 1)
	if adminLn != nil {
		go func() { adminDone <- d.serveAdmin(actx, adminLn) }()
		d.log.Info("admin API", "address", adminLn.Addr().String())
	} else {
		adminDone <- nil
	}
	if o.Started != nil {
		o.Started(d)
	}
	d.loop(ctx, w, o)

	d.log.Info("shutting down: no new connections; waiting for open ones", "timeout", o.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	err = d.Shutdown(sctx)
	stopAdmin()
	err = errors.Join(err, <-adminDone)
	if err == nil {
		d.log.Info("stopped: every connection finished")
	}
	return err
}

// loop waits for file events (debounced) and reload requests until ctx ends.
func (d *Daemon) loop(ctx context.Context, w *watcher, o RunOptions) {
	quietFor, capFor := o.Debounce, o.DebounceCap
	if quietFor <= 0 {
		quietFor = DefaultDebounce
	}
	if capFor <= 0 {
		capFor = DefaultDebounceCap
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	capTimer := time.NewTimer(time.Hour)
	capTimer.Stop()
	pending := false
	fire := func(why string) {
		quiet.Stop()
		capTimer.Stop()
		pending = false
		d.reload(o, w, why)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.Reload:
			fire(whyRequested)
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			d.log.Debug("file event", "event", ev.String())
			quiet.Reset(quietFor)
			if !pending {
				pending = true
				capTimer.Reset(capFor)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// A lost event (queue overflow) may hide a change: reload to be sure.
			d.log.Warn("file watcher error; reloading to be safe", "error", err)
			fire("watcher error")
		case <-quiet.C:
			fire("files changed")
		case <-capTimer.C:
			fire("files keep changing")
		}
	}
}

// reload loads the configuration and applies it if valid; otherwise the running
// generation stays and the diagnostics go to the log and /status.
func (d *Daemon) reload(o RunOptions, w *watcher, why string) {
	start := time.Now()
	// Watch new directories before reading them, so a file written into a new
	// subdirectory right after this load still raises an event.
	w.arm(d.Config())
	res, err := schema.Load(o.Load, o.Paths...)
	if err != nil {
		d.log.Error("reload failed; still serving generation "+fmt.Sprint(d.Generation()), "why", why, "error", err)
		d.RecordFailedLoad(nil, err)
		w.arm(d.Config())
		return
	}
	for _, diag := range res.Diagnostics {
		d.log.Warn("configuration "+string(diag.Severity), "at", fmt.Sprintf("%s:%d:%d", diag.File, diag.Line, diag.Column),
			"code", diag.Code, "message", diag.Message)
	}
	if res.Config == nil {
		d.log.Error("reload failed: the configuration has errors; still serving generation "+fmt.Sprint(d.Generation()), "why", why)
		d.RecordFailedLoad(res.Diagnostics, nil)
		w.arm(d.Config())
		return
	}
	before := d.Generation()
	if _, err := d.Apply(res.Config); err != nil {
		d.log.Error("reload failed; still serving generation "+fmt.Sprint(before), "why", why, "error", err)
	} else if d.Generation() == before {
		level := slog.LevelDebug
		if why == whyRequested {
			level = slog.LevelInfo // an operator asked: answer
		}
		d.log.Log(context.Background(), level, "reload: nothing changed", "why", why, "generation", before)
	} else {
		d.log.Info("reload applied", "why", why, "generation", d.Generation(), "took", time.Since(start).Round(time.Microsecond))
	}
	w.arm(res.Config)
}
