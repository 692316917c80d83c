package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/edge"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/server"
	"github.com/tlsd/tlsd/watch"
)

// TunnelListen makes tlsd an edge: agents connect to Addr with client certificates the
// TLS config verifies.
type TunnelListen struct {
	Addr   string
	TLS    *tls.Config
	PKI    *tunnel.PKI // the files TLS reads its credentials from, when it does
	Window uint32      // each stream's receive window; 0: tunnel.DefaultWindow
}

// RunOptions configure Run.
type RunOptions struct {
	Tunnel *TunnelListen // nil for tlsd run
	Options
	Paths []string // what to load and watch
	// Watcher, made by NewWatcher before the initial configuration was loaded, watches
	// Paths (nil: Run watches them from its start on). Run closes it.
	Watcher *watch.Watcher
	Load    schema.Options // how to load it
	Admin   string         // admin API address, or "off"
	// AdminHosts are further host names the admin API answers to (see admin.Guard);
	// AdminPprof serves /debug/pprof/ on an admin address beyond loopback too.
	AdminHosts      []string
	AdminPprof      bool
	ShutdownTimeout time.Duration
	// UpgradeDrainTimeout bounds, after a hand-over, how long this process's open
	// connections may continue (0: until they end); a stop signal then allows
	// ShutdownTimeout more.
	UpgradeDrainTimeout time.Duration
	Debounce            time.Duration   // quiet period after the last file event; 0: watch.DefaultDebounce
	DebounceCap         time.Duration   // longest wait after the first event; 0: watch.DefaultDebounceCap
	Reload              <-chan struct{} // e.g. SIGHUP: reload now, re-arming every watch
	// InitialWarnings are the warnings of the initial configuration, already logged: a
	// reload logs a warning only when it is new.
	InitialWarnings schema.Diagnostics
	Started         func(*Daemon) // called once the first generation serves (tests)
	// Upgrade (SIGUSR2) hands every listening socket to a new process started from
	// Executable with Args, and drains this one once that serves (UpgradeTimeout, 0:
	// DefaultUpgradeTimeout). Inherited are the sockets this process was handed.
	Upgrade        <-chan struct{}
	Executable     string
	Args           []string
	UpgradeTimeout time.Duration
	Inherited      *Inherited
}

// Run serves initial, then watches the configuration and applies every valid change
// without dropping connections, until ctx ends; then it drains for ShutdownTimeout.
func Run(ctx context.Context, initial *schema.Config, o RunOptions) error {
	if o.Watcher != nil {
		defer o.Watcher.Close()
	}
	adminLn, err := listenAdmin(o)
	if err != nil {
		return err
	}
	pool, tunnelLn, err := startTunnel(&o)
	if err != nil {
		closeIf(adminLn)
		return err
	}
	o.inheritListeners()
	d, err := Start(initial, o.Options)
	if err != nil {
		closeIf(adminLn)
		pool.Close()
		return err
	}
	if pool != nil {
		pool.SetServes(d.EndpointsOf)
	}
	w, err := o.watcher(d.log)
	if err != nil {
		d.Shutdown(context.Background())
		closeIf(adminLn)
		pool.Close()
		return err
	}
	if o.Watcher == nil {
		defer w.Close()
	}
	w.Arm(initial)
	actx, stopAdmin := context.WithCancel(context.Background())
	adminDone := serveAdminOn(actx, adminLn, o.guard(d.AdminHandler()), d.log)
	if o.Started != nil {
		o.Started(d)
	}
	o.Inherited.closeUnused(d.log)
	o.Inherited.Ready() // a process that handed its sockets over may drain now
	// After an upgrade the new process is the service's main one; systemd must be told
	// (and allow it: NotifyAccess=all).
	notifySystemd("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()))
	successor := w.Run(ctx, d, o.reload(d.log, func() (int, bool) { return upgradeDaemon(d, o, adminLn, tunnelLn, pool) }))
	if successor != 0 {
		stopAdmin() // the admin API is the new process's now; this one only drains
		ictx, stopIgnoring := context.WithCancel(context.Background())
		defer stopIgnoring()
		go ignoreUpgrades(ictx, o.Upgrade, successor, d.log)
	} else {
		notifySystemd("STOPPING=1") // the service stops (not so after a hand-over)
	}

	sctx, cancel, limit := o.drainContext(ctx, successor != 0)
	defer cancel()
	d.log.Info("shutting down: no new connections; waiting for open ones", "timeout", limit)
	// Cutting what is still open when the timeout ends is what the operator asked for:
	// a warning, not a failed exit.
	if err := d.Shutdown(sctx); err != nil {
		d.log.Warn("stopped: the shutdown timeout closed connections still open", "timeout", limit, "error", err)
	} else {
		d.log.Info("stopped: every connection finished")
	}
	pool.Close()
	stopAdmin()
	return <-adminDone
}

// startTunnel opens (or takes over) an edge's tunnel listener and serves agents on it. A
// process taking over from another edge first waits for that one's agents, so that its
// endpoints find them from its first connection on.
func startTunnel(o *RunOptions) (*server.AgentPool, net.Listener, error) {
	if o.Tunnel == nil {
		return nil, nil, nil
	}
	ln, err := o.inheritedOr(socketTunnel, o.Tunnel.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel listener: %w", err)
	}
	pool := server.NewAgentPool(o.Logger)
	pool.Window = o.Tunnel.Window
	o.Options.Tunnel = pool
	go pool.Serve(ln, o.Tunnel.TLS)
	o.Logger.Info("tunnel listener: agents connect here", "address", ln.Addr().String())
	awaitAgents(pool, o.Inherited, o.Logger)
	return pool, ln, nil
}

// inheritListeners makes the daemon take its listeners from the inherited sockets first.
func (o *RunOptions) inheritListeners() {
	if o.Inherited == nil {
		return
	}
	next := o.Options.Bind
	if next == nil {
		next = edge.Listen
	}
	o.Options.Bind = o.Inherited.bind(next)
}

// upgradeDaemon hands the daemon's sockets to a new process; the PID it returns is that
// process's when it serves, and ok says this one should drain now. An edge first stops
// accepting agents and tells its agents to connect to the new process, which serves once
// they have; a failed hand-over takes the agents back.
func upgradeDaemon(d *Daemon, o RunOptions, adminLn, tunnelLn net.Listener, pool *server.AgentPool) (pid int, ok bool) {
	if o.Executable == "" {
		d.log.Warn("upgrade requested, but this process does not know the binary it was started from")
		return 0, false
	}
	sockets := d.listeners()
	if adminLn != nil {
		sockets[socketAdmin] = adminLn
	}
	var env []string
	resume := func() {}
	if pool != nil {
		// A copy of the tunnel socket for the new process: HandOver closes the pool's.
		copyLn, err := duplicate(tunnelLn)
		if err != nil {
			d.log.Error("upgrade failed; this process keeps serving", "error", err)
			return 0, false
		}
		defer copyLn.Close()
		sockets[socketTunnel] = copyLn
		agents := pool.HandOver()
		env = append(env, envAgents+"="+strings.Join(agents, ","))
		resume = func() { // take the agents back: they queue on the socket meanwhile
			again, err := duplicate(copyLn)
			if err != nil {
				d.log.Error("after the failed upgrade, agents cannot connect again", "error", err)
				return
			}
			go pool.Serve(again, o.Tunnel.TLS)
		}
		d.log.Info("upgrade: agents told to connect to the new process", "agents", agents)
	}
	pid, err := handOver(o.Executable, o.Args, env, sockets, cmp.Or(o.UpgradeTimeout, DefaultUpgradeTimeout), d.log)
	if err != nil {
		resume()
		d.log.Error("upgrade failed; this process keeps serving", "error", err)
		return 0, false
	}
	d.log.Info("upgrade: the new process serves; this one stops accepting and drains", "new_pid", pid)
	return pid, true
}

// duplicate makes another listener on ln's socket.
func duplicate(ln net.Listener) (net.Listener, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("listener %s cannot be duplicated", ln.Addr())
	}
	f, err := fl.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileListener(f)
}

// awaitAgents holds the readiness of an edge that took over from another until the
// agents the old one told to come have connected.
func awaitAgents(pool *server.AgentPool, in *Inherited, log *slog.Logger) {
	if pool == nil || in == nil || len(in.agents) == 0 {
		return
	}
	if missing := pool.WaitForAgents(in.agents, agentWait); len(missing) > 0 {
		log.Warn("serving before every agent of the previous process connected", "missing", missing, "waited", agentWait)
	}
}

// agentWait bounds how long a new edge process waits for the agents of the old one.
const agentWait = 5 * time.Second

// ignoreUpgrades answers upgrade requests that reach a process which already handed its
// sockets over, until ctx ends.
func ignoreUpgrades(ctx context.Context, upgrade <-chan struct{}, successor int, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-upgrade:
			log.Warn("upgrade requested of a process that is draining: it handed its sockets over; signal the new one", "new_pid", successor)
		}
	}
}

// inheritedOr is the inherited socket called name (or a passed one bound to addr), or a
// new listener on addr.
func (o RunOptions) inheritedOr(name, addr string) (net.Listener, error) {
	if ln, ok := o.Inherited.listener(name); ok {
		return ln, nil
	}
	if o.Inherited != nil {
		if ln, ok := o.Inherited.activatedFor(addr); ok {
			return ln, nil
		}
	}
	return net.Listen("tcp", addr)
}

// listenAdmin binds the admin API (or takes it over), or returns nil when it is off.
func listenAdmin(o RunOptions) (net.Listener, error) {
	enabled, loopback, err := admin.CheckAddr(o.Admin)
	if err != nil || !enabled {
		return nil, err
	}
	ln, err := o.inheritedOr(socketAdmin, o.Admin)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if !loopback {
		o.Logger.Warn("the admin API is reachable beyond this machine", "address", o.Admin)
	}
	return ln, nil
}

// serveAdminOn serves h on ln (if any) until ctx ends; the channel gives the result.
func serveAdminOn(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) <-chan error {
	done := make(chan error, 1)
	if ln == nil {
		done <- nil
		return done
	}
	log.Info("admin API", "address", ln.Addr().String())
	go func() { done <- admin.Serve(ctx, ln, h) }()
	return done
}

// NewWatcher watches what o names (the roots, the tunnel's files), ignoring the state
// directory. Make it before loading the initial configuration and give it to Run as
// Watcher, so that no change made while the configuration is first read is lost.
func (o RunOptions) NewWatcher(log *slog.Logger) (*watch.Watcher, error) {
	w, err := watch.New(watch.Options{Paths: o.Paths, StateDir: o.StateDir, Extra: o.TunnelPKI.Files(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("watch configuration: %w", err)
	}
	return w, nil
}

// watcher is o.Watcher, or a new one (its watches begin now, after the initial load),
// which the caller closes.
func (o RunOptions) watcher(log *slog.Logger) (*watch.Watcher, error) {
	if o.Watcher != nil {
		return o.Watcher, nil
	}
	return o.NewWatcher(log)
}

// reload is how the watcher reloads, as o configures it; handOver runs on an upgrade
// request.
func (o RunOptions) reload(log *slog.Logger, handOver func() (int, bool)) watch.Reload {
	return watch.Reload{Load: o.Load, Debounce: o.Debounce, DebounceCap: o.DebounceCap, Requests: o.Reload, Upgrade: o.Upgrade,
		HandOver: handOver, InitialWarnings: o.InitialWarnings, BeforeReload: func() { o.TunnelPKI.Reload(log) }, Notify: notifySystemd}
}

// guard puts the admin API's exposure policy, as o configures it, in front of h.
func (o RunOptions) guard(h http.Handler) http.Handler {
	return admin.Guard(h, o.Admin, o.AdminHosts, o.AdminPprof)
}

// drainContext bounds the last drain: ShutdownTimeout when the process stops; after a
// hand-over UpgradeDrainTimeout (0: none), as HAProxy's old process serves its
// connections to their end, until a stop signal (ctx) allows ShutdownTimeout more. limit
// says which, for the log.
func (o RunOptions) drainContext(ctx context.Context, handedOver bool) (context.Context, context.CancelFunc, string) {
	if !handedOver {
		c, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
		return c, cancel, o.ShutdownTimeout.String()
	}
	c, cancel := context.WithCancel(context.Background())
	limit := "until they end (--upgrade-drain-timeout)"
	if o.UpgradeDrainTimeout > 0 {
		c, cancel = context.WithTimeout(context.Background(), o.UpgradeDrainTimeout)
		limit = o.UpgradeDrainTimeout.String()
	}
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(o.ShutdownTimeout, cancel) })
	return c, func() { stop(); cancel() }, limit
}
