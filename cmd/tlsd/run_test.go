package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testport"
)

// lockedBuffer is written by the child's output copier while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tlsdProcess starts the test binary as `tlsd args...`.
func tlsdProcess(t *testing.T, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TLSD_TEST_MAIN=1")
	// A group of its own: the processes an upgrade starts belong to it and hold its
	// output pipe, so the cleanup ends them all, or Wait would wait for the last of them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("tlsd %v did not end after SIGKILL to its process group", args)
		}
	})
	return cmd, out
}

// dialUntilServed polls a tlsd process until it completes a handshake for sni.
func dialUntilServed(t *testing.T, addr, sni string, out *lockedBuffer) *tls.Conn {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tlsd never served %s: %v\n%s", sni, err, out)
		}
	}
}

// holdingUpstream accepts connections and holds them open, silent, until the test ends.
func holdingUpstream(t *testing.T) net.Listener {
	t.Helper()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		up.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return up
}

// freeAddr is a loopback address for a tlsd process to listen on, outside the range the
// kernel hands to other sockets meanwhile.
func freeAddr(t *testing.T) string { return testport.Unused(t) }

// TestRunServesAndStopsOnSIGTERM: tlsd run serves, and SIGTERM ends it cleanly (exit 0)
// after it stopped accepting.
func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := "apiVersion: tlsd/v1\nkind: Endpoint\nname: e\ndomain: e.test\nupstream: " + freeAddr(t) +
		"\nterminate_at: edge\ntls: {issuer: internal}\n"
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(cfg), 0o644)
	admin := freeAddr(t)
	cmd, out := tlsdProcess(t, "run", "--listen", addr, "--admin", admin, "--state-dir", filepath.Join(dir, "state"), "--log-format", "json", dir)
	dialUntilServed(t, addr, "e.test", out).Close()

	// The admin API answers tlsd status and tlsd plan --admin.
	code, status, stderr := tlsd(t, "status", "--admin", admin)
	if code != 0 || !strings.Contains(status, "generation 1") || !strings.Contains(status, "e.test") {
		t.Errorf("tlsd status: exit %d\n%s%s", code, status, stderr)
	}
	if code, plan, _ := tlsd(t, "plan", "--admin", admin, dir); code != 0 || !strings.Contains(plan, "No changes") {
		t.Errorf("tlsd plan --admin on the served directory: exit %d\n%s", code, plan)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "e.yaml"), []byte(strings.Replace(cfg, "name: e\n", "name: renamed\n", 1)), 0o644)
	if code, plan, _ := tlsd(t, "plan", "--admin", admin, other); code != 3 || !strings.Contains(plan, `+ endpoint "renamed"`) {
		t.Errorf("tlsd plan --admin on a changed directory: exit %d\n%s", code, plan)
	}

	// SIGHUP reloads at once; the configuration is unchanged, and tlsd says so.
	cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), `"why":"reload requested"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", out)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("tlsd did not stop on SIGTERM\n%s", out)
	}
	if !strings.Contains(out.String(), `"msg":"stopped: every connection finished"`) {
		t.Errorf("no clean-stop log line:\n%s", out)
	}
}

// TestJSONLogsRefusal: under --log-format json a refused start is JSON too: a line per
// diagnostic with its position and code, then the refusal.
func TestJSONLogsRefusal(t *testing.T) {
	code, _, stderr := tlsd(t, "run", "--listen", freeAddr(t), "--log-format", "json", writeConfig(t, invalidEndpoint))
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var diag struct {
		Msg, File, Code string
		Line, Column    int
	}
	if code != 1 || len(lines) < 2 || json.Unmarshal([]byte(lines[0]), &diag) != nil ||
		diag.Msg != "configuration error" || diag.Code != "wrong-type" || diag.Line != 9 || diag.Column != 16 {
		t.Fatalf("exit %d, first line %+v; stderr:\n%s", code, diag, stderr)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("stderr line is not JSON: %s", l)
		}
	}
	if !strings.Contains(lines[len(lines)-1], "refusing to start") {
		t.Errorf("the last line does not say why tlsd stopped: %s", lines[len(lines)-1])
	}
}

// TestRunRefusesInvalidConfig: the same diagnostics as validate, exit 1, nothing bound.
func TestRunRefusesInvalidConfig(t *testing.T) {
	addr := freeAddr(t)
	code, _, stderr := tlsd(t, "run", "--listen", addr, writeConfig(t, invalidEndpoint))
	if code != 1 || !strings.Contains(stderr, "endpoint.yaml:9:16: error: min_version must be a string") ||
		!strings.Contains(stderr, "refusing to start") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if ln, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("address taken after a refused start: %v", err)
	} else {
		ln.Close()
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir := writeConfig(t, validEndpoint)
	for _, args := range [][]string{
		{"run", "--log-format", "xml", dir},
		{"run", "--log-level", "loud", dir},
		{"run", "--proxy-protocol-from", "10.0.0.0/8,10.1.2.300", dir},
		{"edge", "--proxy-protocol-from", "lb.example.com", dir},
		{"edge", "--tunnel-window", "1KiB", dir},
		{"agent", "--tunnel-window", "lots", dir},
		{"agent", "--edge", "no-port", "--edge", "b:1", "--cert", "c", "--key", "k", "--ca", "ca", dir},
		{"agent", "--edge", "b:1", "--edge", "b:1", "--cert", "c", "--key", "k", "--ca", "ca", dir},
		{"run", "--http-listen", "80", dir},
		{"tunnel", "--days", "0", "agent-cert", "api-agent"},
		{"tunnel", "agent-cert", "Bad_Name"},
		{"tunnel", "edge-cert", "edge.example.com/path"},
		{"status", "--format", "xml"},
		{"status", "--wait-revision", "abc12"},
		{"status", "--admin", "127.0.0.1:1", "--admin", "127.0.0.1:2"},
		{"run", "--upgrade-drain-timeout", "-1s", dir},
		{"validate", "--http-listen", "localhost", dir},
		{"run", "--state-store", "http://127.0.0.1:1", dir},
		{"run", "--state-store", "redis://" + testport.Unused(t) + "/0", dir}, // nothing listens: refuses to start
		{"run", "--state-store-key", filepath.Join(dir, "endpoints.yaml"), dir},
		{"run", "--state-store", "redis://127.0.0.1:1/0", "--state-store-ca", "ca.pem", dir},
		{"run"},
	} {
		named := len(args) > 1 && strings.HasPrefix(args[1], "--") // the flag the value is wrong for
		if code, _, stderr := tlsd(t, args...); code != 2 || stderr == "" || named && !strings.Contains(stderr, args[1]) {
			t.Errorf("tlsd %v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestCAPrintsTheRoot(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := tlsd(t, "ca", "--state-dir", dir)
	_, out2, _ := tlsd(t, "ca", "--state-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") || out != out2 {
		t.Errorf("tlsd ca: exit %d, stable = %v\n%s", code, out == out2, out)
	}
}

// TestShutdownReadinessAndExit: /readyz turns 503 the moment SIGTERM arrives, while the
// open connection drains; a shutdown whose timeout closes that connection did what it
// was asked and exits 0.
func TestShutdownReadinessAndExit(t *testing.T) {
	up := holdingUpstream(t)
	dir := t.TempDir()
	cfg := "apiVersion: tlsd/v1\nkind: Endpoint\nname: e\ndomain: e.test\nupstream: " + up.Addr().String() +
		"\nterminate_at: edge\ntls: {issuer: internal}\n"
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(cfg), 0o644)
	addr, admin := freeAddr(t), freeAddr(t)
	cmd, out := tlsdProcess(t, "run", "--listen", addr, "--admin", admin, "--shutdown-timeout", "1s",
		"--state-dir", filepath.Join(dir, "state"), "--log-format", "json", dir)
	conn := dialUntilServed(t, addr, "e.test", out)
	defer conn.Close()
	ready := func() int {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz = %d before the shutdown", code)
	}
	if code, out, _ := tlsd(t, "status", "--ready", "--admin", admin); code != 0 {
		t.Errorf("tlsd status --ready while serving: exit %d %q", code, out)
	}
	signalled := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	for ready() != http.StatusServiceUnavailable {
		if time.Since(signalled) > 2*time.Second {
			t.Fatalf("/readyz not 503 %s after SIGTERM\n%s", time.Since(signalled), out)
		}
	}
	t.Logf("/readyz 503 %s after SIGTERM", time.Since(signalled).Round(time.Microsecond))
	if code, out, _ := tlsd(t, "status", "--ready", "--admin", admin); code != 1 {
		t.Errorf("tlsd status --ready while draining: exit %d %q, want 1", code, out)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("a shutdown that closed what its timeout said to: %v, want exit 0\n%s", err, out)
	}
	if !strings.Contains(out.String(), "the shutdown timeout closed connections still open") {
		t.Errorf("no log line for the connections the timeout closed:\n%s", out)
	}
}

// TestSystemdNotifications: under a service manager that asked for them (NOTIFY_SOCKET),
// tlsd says READY=1 once serving, RELOADING=1 and READY=1 around a SIGHUP reload, and
// STOPPING=1 when SIGTERM begins the shutdown.
func TestSystemdNotifications(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	mustT(t, err)
	defer ln.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.Contains(m, want) {
				t.Fatalf("notification %q, want %s", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s notification", want)
		}
	}
	dir := writeConfig(t, validEndpoint)
	cmd := exec.Command(os.Args[0], "run", "--listen", freeAddr(t), "--admin", "off", "--state-dir", filepath.Join(dir, "state"), dir)
	cmd.Env = append(os.Environ(), "TLSD_TEST_MAIN=1", "NOTIFY_SOCKET="+sock)
	mustT(t, cmd.Start())
	defer cmd.Process.Kill()
	expect("READY=1")
	cmd.Process.Signal(syscall.SIGHUP)
	expect("RELOADING=1")
	expect("READY=1")
	cmd.Process.Signal(syscall.SIGTERM)
	expect("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
