package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tlsdProcess starts the test binary as `tlsd args...`.
func tlsdProcess(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TLSD_TEST_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunServesAndStopsOnSIGTERM: tlsd run serves, and SIGTERM ends it cleanly (exit 0)
// after it stopped accepting.
func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := "apiVersion: tlsd/v1\nkind: Endpoint\nname: e\ndomain: e.test\nupstream: " + freeAddr(t) +
		"\nterminate_at: edge\ntls: {issuer: internal}\n"
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(cfg), 0o644)
	cmd, out := tlsdProcess(t, "run", "--listen", addr, "--state-dir", filepath.Join(dir, "state"), "--log-format", "json", dir)
	var conn *tls.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if conn, err = tls.Dial("tcp", addr, &tls.Config{ServerName: "e.test", InsecureSkipVerify: true}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("tlsd never served: %v\n%s", err, out)
	}
	conn.Close()
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
		{"run"},
	} {
		if code, _, stderr := tlsd(t, args...); code != 2 || stderr == "" {
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
