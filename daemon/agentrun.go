package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/tunnel/client"
)

// AgentRunOptions configure RunAgent.
type AgentRunOptions struct {
	RunOptions
	Name  string      // the agent's identity, from its certificate
	Edges []string    // the edges' tunnel addresses: a session to each (to each address of a name)
	TLS   *tls.Config // the agent's client certificate and the CA of the edge's
	// BackoffBase and BackoffMax bound the waits between reconnects (jittered).
	BackoffBase, BackoffMax time.Duration
	Window                  uint32        // each stream's receive window; 0: tunnel.DefaultWindow
	Resolve                 time.Duration // how often edge names are resolved again; 0: agent.DefaultResolve
	StartedAgent            func(*Agent)  // called once serving (tests)
}

// RunAgent serves the agent's endpoints through its tunnel to the edge and applies
// configuration changes, until ctx ends.
func RunAgent(ctx context.Context, initial *schema.Config, o AgentRunOptions) error {
	if o.Watcher != nil {
		defer o.Watcher.Close()
	}
	adminLn, err := listenAdmin(o.RunOptions)
	if err != nil {
		return err
	}
	a := NewAgent(o.Name, o.Options)
	defer a.Close()
	if _, err := a.Apply(initial); err != nil {
		closeIf(adminLn)
		return err
	}
	w, err := o.watcher(a.log)
	if err != nil {
		closeIf(adminLn)
		return err
	}
	if o.Watcher == nil {
		defer w.Close()
	}
	w.Arm(initial)
	a.Tunnel = &client.Tunnels{Edges: o.Edges, TLS: o.TLS, Config: tunnelConfig(o.TunnelPKI), Report: a.CertificateReport, Handle: a.Handle, Log: a.log, Resolve: o.Resolve,
		BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax, Window: o.Window}
	tctx, stopTunnel := context.WithCancel(context.Background())
	tunnelDone := make(chan struct{})
	go func() { defer close(tunnelDone); a.Tunnel.Run(tctx) }()
	actx, stopAdmin := context.WithCancel(context.Background())
	adminDone := serveAdminOn(actx, adminLn, o.guard(a.AdminHandler()), a.log)
	if o.StartedAgent != nil {
		o.StartedAgent(a)
	}
	o.Inherited.closeUnused(a.log)
	awaitTunnel(a.Tunnel, o.Inherited, a.log)
	o.Inherited.Ready()
	successor := w.Run(ctx, a, o.reload(a.log, func() (int, bool) { return upgradeAgent(a, o.RunOptions, adminLn) }))
	if successor != 0 {
		stopAdmin() // the new process's now
		ictx, stopIgnoring := context.WithCancel(context.Background())
		defer stopIgnoring()
		go ignoreUpgrades(ictx, o.Upgrade, successor, a.log)
	}
	a.stopping.Store(true)
	dctx, cancel, limit := o.drainContext(ctx, successor != 0)
	defer cancel()
	a.drain(dctx, limit)
	stopTunnel()
	<-tunnelDone
	stopAdmin()
	return <-adminDone
}

// drain asks the edge for no more streams and waits, until ctx ends, for the open ones
// to end; the tunnel closes after.
func (a *Agent) drain(ctx context.Context, limit string) {
	a.log.Info("shutting down: the edge sends no more streams; waiting for the open ones", "open", a.Tunnel.Active(), "timeout", limit)
	a.Tunnel.Drain()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.Tunnel.Active() > 0 {
		select {
		case <-ctx.Done():
			a.log.Warn("streams still open after the shutdown timeout: closing them", "open", a.Tunnel.Active())
			return
		case <-tick.C:
		}
	}
	a.log.Info("stopped: every stream finished")
}

// upgradeAgent hands the agent's admin socket to a new agent process, which serves once
// its own session to the edge is up; this one then drains.
func upgradeAgent(a *Agent, o RunOptions, adminLn net.Listener) (int, bool) {
	if o.Executable == "" {
		a.log.Warn("upgrade requested, but this process does not know the binary it was started from")
		return 0, false
	}
	sockets := map[string]net.Listener{}
	if adminLn != nil {
		sockets[socketAdmin] = adminLn
	}
	pid, err := handOver(o.Executable, o.Args, nil, sockets, cmp.Or(o.UpgradeTimeout, DefaultUpgradeTimeout), a.log)
	if err != nil {
		a.log.Error("upgrade failed; this process keeps serving", "error", err)
		return 0, false
	}
	a.log.Info("upgrade: the new agent serves; this one drains its streams", "new_pid", pid)
	return pid, true
}

// awaitTunnel holds the readiness of an agent that took over from another until its own
// session to the edge is up (or agentWait passes), so no moment passes with neither
// taking streams.
func awaitTunnel(t *client.Tunnels, in *Inherited, log *slog.Logger) {
	if in == nil || in.ready == nil {
		return
	}
	for deadline := time.Now().Add(agentWait); !allConnected(t); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			log.Warn("serving before the tunnel to the edge is up", "waited", agentWait)
			return
		}
	}
}

// allConnected: every edge session is up (and there is one).
func allConnected(t *client.Tunnels) bool {
	n := t.Connected()
	return n > 0 && n == len(t.Sessions())
}

// AdminHandler serves the agent's /healthz, /readyz, /status, /config, /metrics and
// /debug/pprof/.
func (a *Agent) AdminHandler() http.Handler {
	reg := admin.NewRegistry()
	reg.MustRegister(configInfo(a.served.get))
	reg.MustRegister(a.orders, newCertExpiry(func() map[string]*builtRoute { return a.gen.Load().routes }))
	if p := a.opts.TunnelPKI; p != nil {
		reg.MustRegister(tunnelCertExpiry(p))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_agent_connected", Help: admin.MetricHelp["tlsd_agent_connected"]}, func() float64 {
			return boolGauge(a.Tunnel != nil && a.Tunnel.Status().Connected)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tlsd_agent_sessions", Help: admin.MetricHelp["tlsd_agent_sessions"]}, func() float64 {
			if a.Tunnel == nil {
				return 0
			}
			return float64(a.Tunnel.Connected())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tlsd_agent_reconnects_total", Help: admin.MetricHelp["tlsd_agent_reconnects_total"]}, func() float64 {
			if a.Tunnel == nil {
				return 0
			}
			return float64(a.Tunnel.Status().Reconnects)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tlsd_agent_streams_total", Help: admin.MetricHelp["tlsd_agent_streams_total"]}, func() float64 {
			if a.Tunnel == nil {
				return 0
			}
			return float64(a.Tunnel.Status().Streams)
		}),
	)
	return admin.Handler(admin.View{
		Page:    func() admin.Page { return admin.AgentPage(a.Status(), a.started) },
		Ready:   a.ready,
		Status:  func() any { return a.Status() },
		Config:  func() any { return a.Config().Portable() },
		Metrics: reg,
	})
}

// ready is nil while the agent has a configuration and a session to its edge, until a
// shutdown begins.
func (a *Agent) ready() error {
	switch {
	case a.stopping.Load():
		return errors.New("shutting down")
	case a.Generation() == 0 || a.Tunnel == nil || !a.Tunnel.Status().Connected:
		return errors.New("not connected to the edge")
	}
	return nil
}

func closeIf(ln net.Listener) {
	if ln != nil {
		ln.Close()
	}
}

// tunnelConfig is the agent's per-session TLS configuration from its tunnel files, nil
// without them (the fixed TLS then).
func tunnelConfig(p *tunnel.PKI) func() *tls.Config {
	if p == nil {
		return nil
	}
	return p.ClientTLS
}
