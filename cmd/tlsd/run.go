package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/daemon"
	"github.com/tlsd/tlsd/iprange"
	"github.com/tlsd/tlsd/localca"
	"github.com/tlsd/tlsd/report"
	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel"
	"github.com/tlsd/tlsd/watch"
)

type runFlags struct {
	listen           string
	admin            string
	drainTimeout     time.Duration
	stateDir         string
	handshakeTimeout time.Duration
	shutdownTimeout  time.Duration
	upgradeDrain     time.Duration
	logFormat        string
	logLevel         string
	exclude          []string
	maxHandshakes    int
	maxConnections   int
	pidFile          string
	adminHosts       []string
	adminPprof       bool
	proxyFrom        cidrList
	httpListen       string
	store            storeFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] PATH...",
		Short: "Serve the endpoints of a configuration directory",
		Long: `Run serves every endpoint of the configuration: it accepts TLS connections, reads
each ClientHello's SNI, and routes the connection to its endpoint's upstream —
passing the encrypted bytes through (terminate_at: upstream), or terminating TLS
itself (edge, agent) and forwarding plaintext.

It refuses to start on an invalid configuration, printing the same diagnostics as
"tlsd validate". Then it watches the configuration directories (and those of the
certificate files they reference) and applies every valid change within about a
second, without dropping a connection: new listeners are bound and certificates loaded
before anything is switched, unchanged endpoints are not touched, removed ones stop
accepting while their open connections drain. An invalid change is logged and shown
by "tlsd status"; the running configuration stays. SIGHUP reloads at once.

SIGTERM or SIGINT stops accepting at once and waits for open connections to finish,
for at most --shutdown-timeout. SIGUSR2 upgrades: the binary at the same path starts
with every listening socket, and once it serves this process stops accepting and keeps
its open connections until they end (--upgrade-drain-timeout bounds that).

Each connection is logged when it ends: endpoint, mode, client address, SNI, TLS
version, negotiated ALPN protocol, client identity (mutual TLS), bytes each way,
duration, and for failures the reason.

Behind a load balancer that sends PROXY protocol headers, --proxy-protocol-from names
it: the client address its header gives then counts for ip_restriction, logs and the
PROXY header sent upstream.

--http-listen ADDR (e.g. :80) adds a plain HTTP listener: it answers ACME http-01
validations for issuers that offer http-01 (required for them) and redirects every
other request for a served domain to https:// (308, path and query kept).`,
		Example: `  tlsd run examples/quickstart
  tlsd run --listen :443 --log-format json /etc/tlsd/endpoints`,
		Args: pathArgs("serve", "tlsd run endpoints/"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(cmd, f, args, schema.RoleAll, nil)
		},
	}
	addRunFlags(cmd, &f, "127.0.0.1:9180")
	return cmd
}

// addRunFlags registers the flags tlsd run, edge and agent share.
func addRunFlags(cmd *cobra.Command, f *runFlags, admin string) {
	fl := cmd.Flags()
	if cmd.Name() != "agent" {
		fl.StringVar(&f.listen, "listen", ":8443", "`ADDR` of the listener for endpoints that name none (their listen field)")
		fl.IntVar(&f.maxHandshakes, "max-handshakes", daemon.DefaultMaxHandshakes, "connections per listener in their handshake phase at once (ClientHello, TLS handshake); past it new ones are closed at once (0: no bound)")
		fl.IntVar(&f.maxConnections, "max-connections", 0, "connections of all endpoints together; past it new ones are accepted and closed at once, so the listener never stops (0: no bound)")
		fl.Var(&f.proxyFrom, "proxy-protocol-from", "`CIDR`s of load balancers that send a PROXY protocol header (v1 or v2) first (comma-separated or repeated); its client address then counts everywhere. Their connections must have one; other sources must not send one")
		fl.StringVar(&f.httpListen, "http-listen", "", "`ADDR` of an HTTP listener (e.g. :80) answering ACME http-01 validations and redirecting every other request to https:// (none when empty)")
		fl.DurationVar(&f.drainTimeout, "drain-timeout", 0, "after a reload, how long connections of removed or changed endpoints may continue (0: until they end)")
	}
	addStoreFlags(fl, &f.store)
	fl.StringVar(&f.admin, "admin", admin, "admin API address (/healthz /readyz /status /config /metrics), or off")
	fl.StringArrayVar(&f.adminHosts, "admin-host", nil, "a host `NAME` the admin API answers to besides IP addresses and localhost (repeatable), e.g. for a reverse proxy in front of it")
	fl.BoolVar(&f.adminPprof, "admin-pprof", false, "serve /debug/pprof/ also when the admin address is not loopback")
	fl.StringVar(&f.stateDir, "state-dir", defaultStateDir(), "directory for tlsd's state: the internal issuer's CA, ACME accounts and certificates ($STATE_DIRECTORY when systemd sets it, else .tlsd)")
	fl.DurationVar(&f.handshakeTimeout, "handshake-timeout", 10*time.Second, "time a client has to send its ClientHello and finish the TLS handshake (and an upstream to answer)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM/SIGINT, how long open connections may continue before they are closed")
	fl.DurationVar(&f.upgradeDrain, "upgrade-drain-timeout", 0, "after an upgrade (SIGUSR2), how long the old process's open connections may continue (0: until they end; a SIGTERM to it then allows --shutdown-timeout more)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	completeValues(cmd, "log-format", "text", "json")
	completeValues(cmd, "log-level", "debug", "info", "warn", "error")
	fl.StringVar(&f.pidFile, "pid-file", "", "write the process ID to `FILE` once serving (after an upgrade, the new process writes its own)")
	addExcludeFlag(fl, &f.exclude)
}

// loadForRun makes the logger and loads the configuration a serving command starts
// with; an invalid configuration is refused with validate's diagnostics.
// loadForRun makes the logger and the configuration's watcher (from o: its paths, state
// directory and tunnel files) before it loads the configuration the first time, so that
// no change made while it reads is lost; the caller closes the watcher.
func loadForRun(cmd *cobra.Command, f runFlags, args []string, load schema.Options, o daemon.RunOptions) (*slog.Logger, *schema.Result, *watch.Watcher, error) {
	logger, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return nil, nil, nil, &exitError{exitUsage, err}
	}
	if _, _, err := admin.CheckAddr(f.admin); err != nil {
		return nil, nil, nil, &exitError{exitUsage, err}
	}
	if err := checkExcludes(f.exclude); err != nil {
		return nil, nil, nil, err
	}
	if f.upgradeDrain < 0 {
		return nil, nil, nil, &exitError{exitUsage, fmt.Errorf("--upgrade-drain-timeout %s: give a duration, or 0 to keep connections until they end", f.upgradeDrain)}
	}
	w, err := o.NewWatcher(logger)
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := schema.Load(load, args...)
	if err != nil {
		w.Close()
		return nil, nil, nil, &exitError{exitUsage, err}
	}
	refused := fmt.Errorf("refusing to start: the configuration has errors")
	if res.Diagnostics.HasErrors() && f.logFormat != "json" {
		w.Close()
		report.Write(cmd.ErrOrStderr(), res, report.Options{Format: report.FormatText})
		return nil, nil, nil, &exitError{exitInvalid, refused}
	}
	for _, d := range res.Diagnostics {
		level, msg := slog.LevelWarn, "configuration warning"
		if d.Severity == schema.SeverityError {
			level, msg = slog.LevelError, "configuration error"
		}
		logger.Log(context.Background(), level, msg, "at", fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Column),
			"file", d.File, "line", d.Line, "column", d.Column, "path", d.Path, "code", d.Code, "message", d.Message)
	}
	if res.Diagnostics.HasErrors() {
		w.Close()
		return nil, nil, nil, failed(logger, f.logFormat, refused)
	}
	return logger, res, w, nil
}

// hupChannel turns SIGHUP into reload requests until ctx ends.
func hupChannel(ctx context.Context) <-chan struct{} { return signalChannel(ctx, syscall.SIGHUP) }

// signalChannel turns sig into requests until ctx ends; one waits while another is
// being served.
func signalChannel(ctx context.Context, sig os.Signal) <-chan struct{} {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	req := make(chan struct{})
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ch:
				select {
				case req <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return req
}

// upgradeOptions wire SIGUSR2 to the hand-over upgrade: the binary at the path this one
// was started from (a replaced binary is what starts), with the same arguments, and the
// sockets this process inherited, if any.
func upgradeOptions(ctx context.Context, o *daemon.RunOptions) error {
	in, err := daemon.InheritedFromEnv()
	if err != nil {
		return &exitError{exitUsage, err}
	}
	o.Inherited, o.Upgrade, o.Args = in, signalChannel(ctx, syscall.SIGUSR2), os.Args[1:]
	if exe, err := exec.LookPath(os.Args[0]); err == nil {
		o.Executable, _ = filepath.Abs(exe)
	}
	return nil
}

func runDaemon(cmd *cobra.Command, f runFlags, args []string, role string, t *daemon.TunnelListen) error {
	if err := checkHTTPListen(f.httpListen); err != nil {
		return err
	}
	load := schema.Options{Role: role, Exclude: f.exclude, HTTPListen: f.httpListen != ""}
	watched := daemon.RunOptions{Options: daemon.Options{StateDir: f.stateDir, TunnelPKI: tunnelPKI(t)}, Paths: args}
	logger, res, w, err := loadForRun(cmd, f, args, load, watched)
	if err != nil {
		return err
	}
	defer w.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	store, err := f.store.open(ctx, logger)
	if err != nil {
		return err
	}
	if store != nil {
		defer store.Close()
	}
	opts := daemon.RunOptions{
		Options: daemon.Options{Listen: f.listen, StateDir: f.stateDir, HandshakeTimeout: f.handshakeTimeout,
			DrainTimeout: f.drainTimeout, Logger: logger, MaxHandshakes: cmp.Or(max(f.maxHandshakes, 0), -1), ProxyProtocolFrom: f.proxyFrom,
			MaxConnections: max(f.maxConnections, 0), StateStore: store, HTTPListen: f.httpListen, TunnelPKI: tunnelPKI(t)},
		Paths: args, Watcher: w, Load: load, Admin: f.admin, ShutdownTimeout: f.shutdownTimeout, UpgradeDrainTimeout: f.upgradeDrain, Reload: hupChannel(ctx), Tunnel: t,
		InitialWarnings: res.Diagnostics, AdminHosts: f.adminHosts, AdminPprof: f.adminPprof,
	}
	if err := upgradeOptions(ctx, &opts); err != nil {
		return err
	}
	if f.pidFile != "" {
		opts.Started = func(*daemon.Daemon) { writePIDFile(f.pidFile, logger) }
		defer removePIDFile(f.pidFile)
	}
	if err := daemon.Run(ctx, res.Config, opts); err != nil {
		return failed(logger, f.logFormat, err)
	}
	return nil
}

// failed ends a serving command that could not start or serve: under --log-format json
// the reason is a log line like every other, so the whole of stderr stays JSON.
func failed(logger *slog.Logger, format string, err error) error {
	if format != "json" {
		return &exitError{exitInvalid, err}
	}
	logger.Error("tlsd stopped", "error", err)
	return &exitError{code: exitInvalid}
}

// defaultStateDir is systemd's StateDirectory= when it set one (the first, if several),
// else .tlsd in the working directory.
func defaultStateDir() string {
	if dirs := os.Getenv("STATE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		return first
	}
	return ".tlsd"
}

// writePIDFile writes this process's ID, atomically: a reader never sees a torn file.
func writePIDFile(path string, log *slog.Logger) {
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		log.Warn("cannot write the PID file", "file", path, "error", err)
	}
}

// removePIDFile removes the PID file if it still names this process (after an upgrade,
// it names the new one).
func removePIDFile(path string) {
	if data, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

func newCACmd() *cobra.Command {
	var stateDir string
	var store storeFlags
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print the root certificate of the built-in internal issuer",
		Long: `Ca prints, as PEM, the root certificate of the local CA that issues certificates for
endpoints with "issuer: internal", creating the CA in --state-dir if it does not
exist yet (with --state-store, the CA the fleet shares in the store). Give it to
clients to trust, e.g.

  tlsd ca > tlsd-root.crt
  curl --cacert tlsd-root.crt https://edge.localhost:8443/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := openCA(cmd.Context(), stateDir, store)
			if err != nil {
				return err
			}
			if ca.Recovered != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "tlsd ca: warning:", ca.Recovered)
			}
			_, err = cmd.OutOrStdout().Write(ca.RootPEM())
			return err
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", defaultStateDir(), "tlsd's state directory (as given to tlsd run)")
	addStoreFlags(cmd.Flags(), &store)
	return cmd
}

// openCA is the CA of the state store when one is given, else of the state directory.
func openCA(ctx context.Context, stateDir string, sf storeFlags) (*localca.CA, error) {
	st, err := sf.open(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	var ca *localca.CA
	if st != nil {
		defer st.Close()
		ca, err = localca.OpenShared(ctx, st, nil)
	} else {
		ca, err = localca.Open(stateDir, nil)
	}
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	return ca, nil
}

// cidrList is --proxy-protocol-from: CIDR prefixes or bare addresses, comma-separated
// or repeated, checked as the flag is parsed.
type cidrList []netip.Prefix

func (l *cidrList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		p, err := iprange.Parse(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		*l = append(*l, p)
	}
	return nil
}

func (l *cidrList) String() string {
	parts := make([]string, len(*l))
	for i, p := range *l {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (l *cidrList) Type() string { return "CIDRs" }

// checkHTTPListen refuses an --http-listen that is not host:port or :port.
func checkHTTPListen(addr string) error {
	if addr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return &exitError{exitUsage, fmt.Errorf("--http-listen: %q is not host:port or :port (e.g. :80)", addr)}
	}
	return nil
}

func tunnelPKI(t *daemon.TunnelListen) *tunnel.PKI {
	if t == nil {
		return nil
	}
	return t.PKI
}
