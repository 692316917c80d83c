package main

import (
	"context"
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/daemon"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel"
)

func newEdgeCmd() *cobra.Command {
	var f runFlags
	var tunnelListen, tunnelCert, tunnelKey, agentCA string
	window := windowSize(tunnel.DefaultWindow)
	cmd := &cobra.Command{
		Use:   "edge [flags] PATH...",
		Short: "Serve the public side of a split deployment; agents connect to it",
		Long: `Edge is "tlsd run" plus a tunnel listener that agents dial out to. Endpoints whose
"agent" field names an agent are served through that agent's sessions: edge-terminated
ones are terminated here and the plaintext goes through the tunnel; agent- and
upstream-terminated ones are routed by SNI and their TLS bytes go through untouched, so
the edge holds no key for them (its checkout need not contain those files).

An agent authenticates with a client certificate signed by --agent-ca; its name is the
certificate's first DNS name (its common name if it has none). Several agents with the
same name form a pool. Endpoints without "agent" are served by the edge itself.`,
		Example: `  tlsd edge --listen :443 --tunnel-listen :4443 \
    --tunnel-cert tunnel.crt --tunnel-key tunnel.key --agent-ca agents-ca.pem endpoints/`,
		Args: pathArgs("serve", "tlsd edge ... endpoints/"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tunnelListen == "" || tunnelCert == "" || tunnelKey == "" || agentCA == "" {
				return &exitError{exitUsage, fmt.Errorf("--tunnel-listen, --tunnel-cert, --tunnel-key and --agent-ca are required")}
			}
			pki, err := tunnel.LoadPKI(tunnelCert, tunnelKey, agentCA, false)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			t := &daemon.TunnelListen{Addr: tunnelListen, Window: uint32(window), TLS: pki.ServerTLS(), PKI: pki}
			return runDaemon(cmd, f, args, schema.RoleEdge, t)
		},
	}
	addRunFlags(cmd, &f, "127.0.0.1:9180")
	fl := cmd.Flags()
	fl.StringVar(&tunnelListen, "tunnel-listen", "", "address agents connect to")
	fl.StringVar(&tunnelCert, "tunnel-cert", "", "certificate the edge presents to agents (PEM)")
	fl.StringVar(&tunnelKey, "tunnel-key", "", "its private key (PEM)")
	fl.StringVar(&agentCA, "agent-ca", "", "CA certificates that sign agents' client certificates (PEM)")
	fl.Var(&window, "tunnel-window", windowHelp)
	return cmd
}

func newAgentCmd() *cobra.Command {
	var f runFlags
	var edges []string
	var certFile, keyFile, caFile string
	window := windowSize(tunnel.DefaultWindow)
	cmd := &cobra.Command{
		Use:   "agent [flags] PATH...",
		Short: "Serve, behind the edge, the endpoints that name this agent",
		Long: `Agent dials out to the edge (TLS 1.3, verifying the edge's certificate against --ca
and presenting --cert), keeps one multiplexed session, and serves the connections the
edge sends for the endpoints whose "agent" is this agent's name — the first DNS name of
--cert (its common name if it has none): it terminates agent-terminated endpoints with
their certificate, passes upstream-terminated ones through, and forwards the plaintext
of edge-terminated ones, writing PROXY headers with the real client address. It
reconnects with exponential backoff and jitter, and watches and reloads its own copy of
the configuration like "tlsd run".`,
		Example: `  tlsd agent --edge edge.example.com:4443 --cert agent.crt --key agent.key --ca tunnel-ca.pem endpoints/`,
		Args:    pathArgs("serve", "tlsd agent ... endpoints/"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(edges) == 0 || certFile == "" || keyFile == "" || caFile == "" {
				return &exitError{exitUsage, fmt.Errorf("--edge, --cert, --key and --ca are required")}
			}
			if err := checkEdges(edges); err != nil {
				return &exitError{exitUsage, err}
			}
			pki, err := tunnel.LoadPKI(certFile, keyFile, caFile, true)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			// Each session checks the edge's certificate for its own --edge host.
			return runAgent(cmd, f, args, tunnel.Identity(pki.Leaf()), edges, pki, uint32(window))
		},
	}
	addRunFlags(cmd, &f, "127.0.0.1:9181")
	fl := cmd.Flags()
	fl.StringArrayVar(&edges, "edge", nil, "an edge's tunnel address, `host:port` (repeatable): a session to each edge, and to each address a name resolves to (looked up again every 30 s)")
	fl.StringVar(&certFile, "cert", "", "the agent's client certificate (PEM); its first DNS name is the agent's name")
	fl.StringVar(&keyFile, "key", "", "its private key (PEM)")
	fl.StringVar(&caFile, "ca", "", "CA certificates that sign the edge's tunnel certificate (PEM)")
	fl.Var(&window, "tunnel-window", windowHelp)
	return cmd
}

// checkEdges: every --edge is host:port, given once.
func checkEdges(edges []string) error {
	seen := map[string]bool{}
	for _, e := range edges {
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("--edge %q: want host:port", e)
		}
		if seen[e] {
			return fmt.Errorf("--edge %s is given twice", e)
		}
		seen[e] = true
	}
	return nil
}

// runAgent loads the agent's view of the configuration and serves it until a signal.
func runAgent(cmd *cobra.Command, f runFlags, args []string, name string, edges []string, pki *tunnel.PKI, window uint32) error {
	watched := daemon.RunOptions{Options: daemon.Options{StateDir: f.stateDir, TunnelPKI: pki}, Paths: args}
	logger, res, w, err := loadForRun(cmd, f, args, schema.Options{Role: schema.RoleAgent, Agent: name, Exclude: f.exclude}, watched)
	if err != nil {
		return err
	}
	defer w.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger.Info("agent starting", "agent", name, "edges", edges)
	store, err := f.store.open(ctx, logger)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
	}
	o := daemon.AgentRunOptions{
		RunOptions: daemon.RunOptions{
			Options: daemon.Options{StateDir: f.stateDir, HandshakeTimeout: f.handshakeTimeout, Logger: logger, StateStore: store, TunnelPKI: pki},
			Paths:   args, Watcher: w, Load: schema.Options{Role: schema.RoleAgent, Agent: name, Exclude: f.exclude}, Admin: f.admin,
			ShutdownTimeout: f.shutdownTimeout, UpgradeDrainTimeout: f.upgradeDrain, Reload: hupChannel(ctx), InitialWarnings: res.Diagnostics,
			AdminHosts: f.adminHosts, AdminPprof: f.adminPprof,
		},
		Name: name, Edges: edges, BackoffBase: 200 * time.Millisecond, BackoffMax: 10 * time.Second, Window: window,
	}
	if err := upgradeOptions(ctx, &o.RunOptions); err != nil {
		return err
	}
	if f.pidFile != "" {
		o.StartedAgent = func(*daemon.Agent) { writePIDFile(f.pidFile, logger) }
		defer removePIDFile(f.pidFile)
	}
	if err := daemon.RunAgent(ctx, res.Config, o); err != nil {
		return failed(logger, f.logFormat, err)
	}
	return nil
}

const windowHelp = "each tunnel stream's receive window (e.g. 16MiB, 512KiB): a stream moves about 0.75 window per round trip; a stream whose reader stalls may hold that much buffered"

// windowSize is --tunnel-window: bytes, with an optional KiB or MiB suffix.
type windowSize uint32

func (w *windowSize) Set(v string) error {
	unit := uint64(1)
	num := v
	for suffix, u := range map[string]uint64{"KiB": 1 << 10, "MiB": 1 << 20} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			num, unit = n, u
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a size: write bytes, or e.g. 512KiB, 16MiB", v)
	case n*unit < tunnel.MinWindow || n*unit > 1<<30:
		return fmt.Errorf("%s is outside %dKiB to 1024MiB", v, tunnel.MinWindow>>10)
	}
	*w = windowSize(n * unit)
	return nil
}

func (w *windowSize) String() string {
	if *w%(1<<20) == 0 {
		return strconv.Itoa(int(*w>>20)) + "MiB"
	}
	return strconv.Itoa(int(*w>>10)) + "KiB"
}

func (w *windowSize) Type() string { return "size" }
