package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// builds holds the tlsd binaries the upgrade tests run, built once per test run.
var builds struct {
	once     sync.Once
	dir      string
	err      error
	old, new string
}

// buildTLSD copies a tlsd binary stamped with version (v-old or v-new) to out.
func buildTLSD(t *testing.T, out, version string) {
	t.Helper()
	builds.once.Do(func() {
		builds.dir, builds.err = os.MkdirTemp("", "tlsd-builds-")
		for _, v := range []string{"v-old", "v-new"} {
			if builds.err != nil {
				return
			}
			cmd := exec.Command("go", "build", "-ldflags", "-X github.com/tlsd/tlsd/version.stamp="+v, "-o", filepath.Join(builds.dir, v), ".")
			if b, err := cmd.CombinedOutput(); err != nil {
				builds.err = fmt.Errorf("go build: %v\n%s", err, b)
			}
		}
	})
	if builds.err != nil {
		t.Fatal(builds.err)
	}
	data, err := os.ReadFile(filepath.Join(builds.dir, version))
	mustT(t, err)
	mustT(t, os.WriteFile(out, data, 0o755))
}

// alive reports whether pid is a process that has not exited (zombies count as exited).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func readPID(path string) int {
	data, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// upgradeWorld is tlsd serving a passthrough and an edge-terminated endpoint under load.
type upgradeWorld struct {
	t                *testing.T
	dir, bin, addr   string
	admin, pidFile   string
	http             string // --http-listen
	out              *lockedBuffer
	stop             chan struct{}
	wg               sync.WaitGroup
	newOK, newFailed atomic.Int64
	firstFailure     atomic.Value
	longs            []*tls.Conn
}

func newUpgradeWorld(t *testing.T) *upgradeWorld {
	return newUpgradeWorldWith(t, "--shutdown-timeout", "5m")
}

// newUpgradeWorldWith starts tlsd with extra flags.
func newUpgradeWorldWith(t *testing.T, extra ...string) *upgradeWorld {
	w := &upgradeWorld{t: t, dir: t.TempDir(), addr: freeAddr(t), admin: freeAddr(t), http: freeAddr(t), out: &lockedBuffer{}, stop: make(chan struct{})}
	w.bin, w.pidFile = filepath.Join(w.dir, "tlsd"), filepath.Join(w.dir, "tlsd.pid")
	buildTLSD(t, w.bin, "v-old")
	buildTLSD(t, w.bin+".new", "v-new")
	plain := echo(t, nil)
	conf := filepath.Join(w.dir, "conf")
	mustT(t, os.MkdirAll(conf, 0o755))
	cfg := "apiVersion: tlsd/v1\nkind: Endpoint\nname: term\ndomain: term.test\nupstream: " + plain +
		"\nterminate_at: edge\ntls: {issuer: internal}\n---\n" +
		"apiVersion: tlsd/v1\nkind: Endpoint\nname: pt\ndomain: pt.test\nupstream: " + w.tlsEcho() + "\n"
	mustT(t, os.WriteFile(filepath.Join(conf, "e.yaml"), []byte(cfg), 0o644))
	args := append([]string{"run", "--listen", w.addr, "--admin", w.admin, "--http-listen", w.http, "--state-dir", filepath.Join(w.dir, "state"),
		"--pid-file", w.pidFile, "--log-format", "json"}, extra...)
	cmd := exec.Command(w.bin, append(args, conf)...)
	cmd.Stdout, cmd.Stderr = w.out, w.out
	mustT(t, cmd.Start())
	go cmd.Wait()
	t.Cleanup(func() { cmd.Process.Kill() })
	dialUntilServed(t, w.addr, "term.test", w.out).Close()
	return w
}

// checkRedirect asks the HTTP listener (--http-listen) for a served domain: a redirect
// to its https:// address.
func (w *upgradeWorld) checkRedirect() {
	req, _ := http.NewRequest("GET", "http://"+w.http+"/x", nil)
	req.Host = "term.test"
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	mustT(w.t, err)
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(w.addr)
	if want := "https://term.test:" + port + "/x"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		w.t.Errorf("HTTP listener: %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// tlsEcho is a TLS echo upstream for the passthrough endpoint; the clients do not verify
// it (the test is about connections, not trust).
func (w *upgradeWorld) tlsEcho() string {
	ca, err := testpki.NewCA("upstream CA", time.Time{}, time.Time{})
	mustT(w.t, err)
	leaf, err := ca.Issue(testpki.Options{CommonName: "pt.test", DNSNames: []string{"pt.test"}})
	mustT(w.t, err)
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	mustT(w.t, err)
	return echo(w.t, &tls.Config{Certificates: []tls.Certificate{pair}})
}

// moreServed waits until n more new connections have ended, well or not: the load has
// reached the process now serving.
func (w *upgradeWorld) moreServed(n int64) {
	w.t.Helper()
	from := w.newOK.Load() + w.newFailed.Load()
	waitUntil(w.t, "new connections", func() bool { return w.newOK.Load()+w.newFailed.Load() >= from+n })
}

// load opens long-lived connections on both endpoints that echo continuously, and a
// stream of new connections.
func (w *upgradeWorld) load() {
	w.loadOn([]string{"term.test", "pt.test", "term.test", "pt.test"}, "term.test", "pt.test")
}

// loadOn opens a long-lived connection to each of longs, echoing continuously, and a
// stream of new connections to names in turn.
func (w *upgradeWorld) loadOn(longs []string, names ...string) {
	for _, sni := range longs {
		c, err := tls.Dial("tcp", w.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		mustT(w.t, err)
		w.longs = append(w.longs, c)
		w.wg.Add(1)
		go w.echoLoop(c)
	}
	w.wg.Add(1)
	go w.newConnectionsTo(names...)
}

func (w *upgradeWorld) fail(format string, args ...any) {
	w.newFailed.Add(1)
	w.firstFailure.CompareAndSwap(nil, fmt.Sprintf(format, args...))
}

func (w *upgradeWorld) echoLoop(c *tls.Conn) {
	defer w.wg.Done()
	msg, got := []byte("long-lived connection"), make([]byte, 21)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			w.fail("long-lived write %d: %v", i, err)
			return
		}
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			w.fail("long-lived echo %d: %q %v", i, got, err)
			return
		}
	}
}

// newConnectionsTo makes a new connection every 3 ms, to each name in turn, and echoes
// once on it.
func (w *upgradeWorld) newConnectionsTo(names ...string) {
	defer w.wg.Done()
	for i := 0; i < 100000; i++ { // bounded; ends with stop
		select {
		case <-w.stop:
			return
		case <-time.After(3 * time.Millisecond):
		}
		sni := names[i%len(names)]
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			w.fail("new connection %d to %s: %v", i, sni, err)
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 3)
		if _, err := c.Write([]byte("new")); err != nil {
			w.fail("new connection %d write: %v", i, err)
		} else if _, err := io.ReadFull(c, got); err != nil || string(got) != "new" {
			w.fail("new connection %d echo: %q %v", i, got, err)
		} else {
			w.newOK.Add(1)
		}
		c.Close()
	}
}

func (w *upgradeWorld) servedVersion() string {
	resp, err := http.Get("http://" + w.admin + "/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Build struct{ Version string } `json:"build"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.Build.Version
}

// TestUpgradeUnderLoad: with the binary on disk replaced, SIGUSR2 twenty times in a row
// under load: no long-lived connection dropped, no new connection refused or failed,
// every echo right, the new version served at the end, and no process left once the
// long-lived connections end.
func TestUpgradeUnderLoad(t *testing.T) {
	w := newUpgradeWorld(t)
	w.load()
	mustT(t, os.Rename(w.bin+".new", w.bin))
	pids := []int{readPID(w.pidFile)}
	for i := range 20 {
		old := pids[len(pids)-1]
		mustT(t, syscall.Kill(old, syscall.SIGUSR2))
		deadline := time.Now().Add(30 * time.Second)
		for readPID(w.pidFile) == old {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade %d: no new process\n%s", i+1, w.out)
			}
			time.Sleep(10 * time.Millisecond)
		}
		pids = append(pids, readPID(w.pidFile))
	}
	w.moreServed(5) // some new connections on the last process
	close(w.stop)
	w.wg.Wait()
	if v := w.servedVersion(); v != "v-new" {
		t.Errorf("after the upgrades /status says version %q, want v-new", v)
	}
	w.checkRedirect() // the HTTP listener was handed over too
	t.Logf("20 upgrades: %d new connections ok, %d failed; %d long-lived connections", w.newOK.Load(), w.newFailed.Load(), len(w.longs))
	if n := w.newFailed.Load(); n > 0 {
		t.Errorf("%d failures, first: %v", n, w.firstFailure.Load())
	}
	for _, c := range w.longs {
		c.Close()
	}
	last := pids[len(pids)-1]
	syscall.Kill(last, syscall.SIGTERM)
	// Twenty race-built processes draining on a machine that also runs the other
	// packages' tests: one once needed more than 20 s.
	deadline := time.Now().Add(60 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			// Its goroutines say where it is stuck: SIGQUIT makes the Go runtime print them
			// to the stderr every process of the chain shares.
			syscall.Kill(pid, syscall.SIGQUIT)
			for end := time.Now().Add(3 * time.Second); alive(pid) && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("process %d (of %v) still runs; the processes said (its goroutines last):\n%s", pid, pids, w.out)
		}
	}
}

// TestUpgradeKeepsLongLivedConnections: 10 long-lived connections echo across 5
// upgrades with a 1 s --shutdown-timeout: none is cut (the old processes keep them, as
// HAProxy's do, past the shutdown timeout, which bounds a stop, not an upgrade), and
// each old process ends once its connections do.
func TestUpgradeKeepsLongLivedConnections(t *testing.T) {
	const shutdown = time.Second
	w := newUpgradeWorldWith(t, "--shutdown-timeout", shutdown.String())
	longs := []string{"term.test", "pt.test", "term.test", "pt.test", "term.test", "pt.test", "term.test", "pt.test", "term.test", "pt.test"}
	w.loadOn(longs, "term.test", "pt.test")
	pids := []int{readPID(w.pidFile)}
	first := time.Now()
	for i := range 5 {
		old := pids[len(pids)-1]
		mustT(t, syscall.Kill(old, syscall.SIGUSR2))
		waitUntil(t, fmt.Sprintf("upgrade %d", i+1), func() bool { return readPID(w.pidFile) != old }, w.out)
		pids = append(pids, readPID(w.pidFile))
	}
	// The old processes' shutdown timeout has passed twice over: their connections echo on.
	time.Sleep(time.Until(first.Add(2 * shutdown)))
	w.moreServed(5)
	close(w.stop)
	w.wg.Wait()
	t.Logf("5 upgrades: %d new connections ok, %d failed; %d long-lived connections", w.newOK.Load(), w.newFailed.Load(), len(w.longs))
	if n := w.newFailed.Load(); n > 0 {
		t.Errorf("%d failures (a long-lived connection cut?), first: %v", n, w.firstFailure.Load())
	}
	for _, c := range w.longs {
		c.Close()
	}
	for _, pid := range pids[:len(pids)-1] {
		waitUntil(t, fmt.Sprintf("old process %d ends once its connections ended", pid), func() bool { return !alive(pid) }, w.out)
	}
	syscall.Kill(pids[len(pids)-1], syscall.SIGTERM)
}

// TestFailedUpgradeKeepsServing: a new binary that exits at once, a configuration that
// became invalid, a listener the new process cannot bind: each upgrade fails, the old
// process keeps serving without a drop, and its log says why.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	w := newUpgradeWorld(t)
	w.load()
	pid := readPID(w.pidFile)
	conf := filepath.Join(w.dir, "conf")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	defer busy.Close()
	good, _ := os.ReadFile(filepath.Join(conf, "e.yaml"))
	cases := []struct {
		name    string
		refused bool // the running process reloads and refuses the change
		prepare func()
	}{
		{"the new binary exits at once", false, func() {
			mustT(t, os.Rename(w.bin, w.bin+".real"))
			mustT(t, os.WriteFile(w.bin, []byte("#!/bin/sh\nexit 3\n"), 0o755))
		}},
		{"the configuration became invalid", true, func() {
			mustT(t, os.Rename(w.bin+".real", w.bin))
			mustT(t, os.WriteFile(filepath.Join(conf, "broken.yaml"), []byte("apiVersion: tlsd/v1\nkind: Endpoint\n"), 0o644))
		}},
		{"the new process cannot bind", true, func() {
			mustT(t, os.Remove(filepath.Join(conf, "broken.yaml")))
			busyEP := strings.NewReplacer("name: pt", "name: busy", "pt.test", "busy.test").Replace(string(good[bytes.Index(good, []byte("---\n"))+4:])) +
				"listen: " + busy.Addr().String() + "\n"
			mustT(t, os.WriteFile(filepath.Join(conf, "busy.yaml"), []byte(busyEP), 0o644))
		}},
	}
	for i, c := range cases {
		refusals := strings.Count(w.out.String(), "reload failed")
		c.prepare()
		if c.refused { // the running process has seen the change and refused it
			waitUntil(t, "a refused reload", func() bool { return strings.Count(w.out.String(), "reload failed") > refusals })
		}
		mustT(t, syscall.Kill(pid, syscall.SIGUSR2))
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(w.out.String(), "upgrade failed; this process keeps serving") <= i {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no failed upgrade logged\n%s", c.name, w.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if readPID(w.pidFile) != pid || !alive(pid) {
			t.Fatalf("%s: the old process stopped serving", c.name)
		}
	}
	w.moreServed(5)
	close(w.stop)
	w.wg.Wait()
	t.Logf("3 failed upgrades: %d new connections ok, %d failed", w.newOK.Load(), w.newFailed.Load())
	if n := w.newFailed.Load(); n > 0 {
		t.Errorf("%d failures, first: %v", n, w.firstFailure.Load())
	}
	for _, line := range strings.Split(w.out.String(), "\n") {
		if strings.Contains(line, "upgrade failed") {
			t.Log(line)
		}
	}
}

// servedBefore polls addr until tlsd completes a handshake, the process exits, or
// timeout passes.
func servedBefore(addr string, exited <-chan struct{}, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "term.test", InsecureSkipVerify: true}); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// TestRestartNegativeControl: the same load across a plain restart (kill, start) sees
// refused new connections and dropped long-lived ones, or the upgrade test proves nothing.
func TestRestartNegativeControl(t *testing.T) {
	w := newUpgradeWorld(t)
	w.load()
	pid := readPID(w.pidFile)
	syscall.Kill(pid, syscall.SIGKILL)
	for alive(pid) {
		time.Sleep(10 * time.Millisecond)
	}
	// Start again. The load's own dials take ephemeral ports, and one may hold the freed
	// port number for a moment: then the start fails and is tried again.
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(w.bin, "run", "--listen", w.addr, "--admin", "off", "--state-dir", filepath.Join(w.dir, "state"),
			"--log-format", "json", filepath.Join(w.dir, "conf"))
		cmd.Stdout, cmd.Stderr = w.out, w.out
		mustT(t, cmd.Start())
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		defer func() { cmd.Process.Kill(); <-exited }()
		if servedBefore(w.addr, exited, 10*time.Second) {
			break
		}
		if attempt == 3 {
			t.Fatalf("the restarted tlsd never served\n%s", w.out)
		}
	}
	w.moreServed(5)
	close(w.stop)
	w.wg.Wait()
	t.Logf("kill and start: %d new connections ok, %d failures (first: %v)", w.newOK.Load(), w.newFailed.Load(), w.firstFailure.Load())
	if w.newFailed.Load() == 0 {
		t.Error("a hard restart under load dropped nothing: the harness cannot see drops")
	}
}

// TestSocketActivation: given the listening socket the way systemd passes it (LISTEN_FDS,
// LISTEN_PID), tlsd serves on it instead of binding; a connection made while no tlsd runs
// waits in the socket's queue and is served by the next one, as with `systemctl restart`
// of a socket-activated service.
func TestSocketActivation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	mustT(t, err)
	defer lnFile.Close()
	plain := echo(t, nil)
	dir := writeConfig(t, "apiVersion: tlsd/v1\nkind: Endpoint\nname: e\ndomain: e.test\nupstream: "+plain+
		"\nterminate_at: edge\ntls: {issuer: internal}\n")
	start := func() *exec.Cmd {
		// As systemd does: the socket at descriptor 3, LISTEN_PID set to the PID that execs tlsd.
		cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "run", "--listen", ln.Addr().String(),
			"--admin", "off", "--state-dir", filepath.Join(dir, "state"), dir)
		cmd.Env = append(os.Environ(), "TLSD_TEST_MAIN=1", "LISTEN_FDS=1")
		cmd.ExtraFiles = []*os.File{lnFile}
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		mustT(t, cmd.Start())
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		dialUntilServed(t, ln.Addr().String(), "e.test", out).Close() // binding it would have failed: it is ours
		return cmd
	}
	first := start()
	mustT(t, first.Process.Signal(syscall.SIGTERM))
	mustT(t, first.Wait())
	// No tlsd runs: the connection is queued by the kernel, not refused.
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("a connection while tlsd restarts was refused: %v", err)
	}
	defer raw.Close()
	start()
	tc := tls.Client(raw, &tls.Config{ServerName: "e.test", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("the queued connection was not served by the next tlsd: %v", err)
	}
	tc.Write([]byte("queued"))
	got := make([]byte, 6)
	if _, err := io.ReadFull(tc, got); err != nil || string(got) != "queued" {
		t.Errorf("echo %q, %v", got, err)
	}
}

// TestEdgeUpgradeWithAgent: tlsd edge upgraded twenty times in a row while connections
// flow through the tunnel to an agent (passthrough, agent termination, edge termination):
// the agent opens a session to each new process and keeps the old one for its streams,
// so no long-lived connection drops and no new connection fails.
func TestEdgeUpgradeWithAgent(t *testing.T) {
	const edgeUpgrades = 20
	w := newSplitWorld(t)
	pidFile := w.path("edge.pid")
	w.edge, w.edgeOut = tlsdProcess(t, "edge", "--listen", w.listen, "--admin", w.edgeAdmin, "--pid-file", pidFile,
		"--shutdown-timeout", "5m", "--state-dir", w.path("edge-state"), "--tunnel-listen", w.tunnel, "--tunnel-cert", w.path("tunnel.crt"),
		"--tunnel-key", w.path("tunnel.key"), "--agent-ca", w.path("agent-ca.crt"), w.edgeDir)
	w.waitFor(w.edgeOut, "tunnel listener")
	w.agentCert(w.agentCA, "api-agent", "api")
	_, agentOut := w.startAgent("api")
	w.agentsLive(1)
	load := &upgradeWorld{t: t, addr: w.listen, stop: make(chan struct{})}
	tunnelled := []string{"zk.test", "ag.test", "ed.test"}
	load.loadOn(tunnelled, tunnelled...)

	pid := readPID(pidFile)
	for i := range edgeUpgrades {
		mustT(t, syscall.Kill(pid, syscall.SIGUSR2))
		deadline := time.Now().Add(30 * time.Second)
		for readPID(pidFile) == pid {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade %d: no new edge process\n%s", i+1, w.edgeOut)
			}
			time.Sleep(10 * time.Millisecond)
		}
		pid = readPID(pidFile)
	}
	load.moreServed(5)
	close(load.stop)
	load.wg.Wait()
	t.Logf("%d edge upgrades: %d new connections ok, %d failed; %d long-lived connections", edgeUpgrades, load.newOK.Load(), load.newFailed.Load(), len(load.longs))
	if n := load.newFailed.Load(); n > 0 {
		t.Errorf("%d failures, first: %v\nedge:\n%s\nagent:\n%s", n, load.firstFailure.Load(), w.edgeOut, agentOut)
	}
	if n := strings.Count(agentOut.String(), "the edge hands over to a new process"); n != edgeUpgrades {
		t.Errorf("the agent followed %d hand-overs, want %d", n, edgeUpgrades)
	}
	for _, c := range load.longs {
		c.Close()
	}
	syscall.Kill(pid, syscall.SIGTERM)
}

// TestAgentUpgrade: tlsd agent upgraded three times in a row while connections flow
// through it: each new agent connects to the edge before the old one asks the edge for no
// more streams (GoAway), and the old one carries its open streams to their end.
func TestAgentUpgrade(t *testing.T) {
	w := newSplitWorld(t)
	w.startEdge()
	w.agentCert(w.agentCA, "api-agent", "api")
	pidFile := w.path("agent.pid")
	_, agentOut := tlsdProcess(t, "agent", "--edge", w.tunnel, "--cert", w.path("api.crt"), "--key", w.path("api.key"),
		"--ca", w.path("tunnel-ca.crt"), "--admin", freeAddr(t), "--pid-file", pidFile, "--shutdown-timeout", "5m",
		"--state-dir", w.path("api-state"), w.agentDir)
	w.agentsLive(1)
	load := &upgradeWorld{t: t, addr: w.listen, stop: make(chan struct{})}
	tunnelled := []string{"zk.test", "ag.test", "ed.test"}
	load.loadOn(tunnelled, tunnelled...)
	for deadline := time.Now().Add(10 * time.Second); readPID(pidFile) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent wrote no PID file\n%s", agentOut)
		}
	}
	pid := readPID(pidFile)
	for i := range 3 {
		mustT(t, syscall.Kill(pid, syscall.SIGUSR2))
		deadline := time.Now().Add(30 * time.Second)
		for readPID(pidFile) == pid {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade %d: no new agent process\n%s", i+1, agentOut)
			}
			time.Sleep(10 * time.Millisecond)
		}
		pid = readPID(pidFile)
	}
	load.moreServed(5)
	close(load.stop)
	load.wg.Wait()
	t.Logf("3 agent upgrades: %d new connections ok, %d failed; %d long-lived connections", load.newOK.Load(), load.newFailed.Load(), len(load.longs))
	if n := load.newFailed.Load(); n > 0 {
		t.Errorf("%d failures, first: %v\nedge:\n%s\nagent:\n%s", n, load.firstFailure.Load(), w.edgeOut, agentOut)
	}
	for _, c := range load.longs {
		c.Close()
	}
	syscall.Kill(pid, syscall.SIGTERM)
}

// TestFailedEdgeUpgradeKeepsAgents: an edge hand-over that fails (the configuration became
// invalid) takes its agents back: the agent told to move connects to the old process
// again, and connections through it keep working.
func TestFailedEdgeUpgradeKeepsAgents(t *testing.T) {
	w := newSplitWorld(t)
	pidFile := w.path("edge.pid")
	w.edge, w.edgeOut = tlsdProcess(t, "edge", "--listen", w.listen, "--admin", w.edgeAdmin, "--pid-file", pidFile,
		"--state-dir", w.path("edge-state"), "--tunnel-listen", w.tunnel, "--tunnel-cert", w.path("tunnel.crt"),
		"--tunnel-key", w.path("tunnel.key"), "--agent-ca", w.path("agent-ca.crt"), w.edgeDir)
	w.waitFor(w.edgeOut, "tunnel listener")
	w.agentCert(w.agentCA, "api-agent", "api")
	_, agentOut := w.startAgent("api")
	w.agentsLive(1)
	mustT(t, os.WriteFile(filepath.Join(w.edgeDir, "broken.yaml"), []byte("apiVersion: tlsd/v1\nkind: Endpoint\n"), 0o644))
	w.waitFor(w.edgeOut, "reload failed")
	mustT(t, syscall.Kill(readPID(pidFile), syscall.SIGUSR2))
	w.waitFor(w.edgeOut, "upgrade failed; this process keeps serving")
	w.waitFor(agentOut, "the edge hands over to a new process")
	w.agentsLive(2) // the old session and the one the hand-over asked for, both to the old process
	for _, sni := range []string{"zk.test", "ag.test", "ed.test"} {
		if err := w.echoes(sni); err != nil {
			t.Errorf("%s after the failed upgrade: %v", sni, err)
		}
	}
}
