package autocert

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// TestHookSolver runs real hook scripts: the contract's arguments, a failure carrying the
// hook's stderr, and a hook (with a child of its own) cut off at the timeout.
func TestHookSolver(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	chal := acme.Challenge{Identifier: acme.Identifier{Type: "dns", Value: "example.com"}, KeyAuthorization: "token.thumbprint"}
	value := chal.DNS01KeyAuthorization()
	for _, c := range []struct {
		name, script string
		timeout      time.Duration
		wantErr      []string // empty: success
		wantLog      string
	}{
		{"contract", `echo "$@" > ` + args, 5 * time.Second, nil, "dns hook ran"},
		{"fails", `echo "zone example.com is not managed here" >&2; exit 3`, 5 * time.Second,
			[]string{"dns hook", "present _acme-challenge.example.com.", "exit status 3", `"zone example.com is not managed here"`}, `stderr="zone example.com is not managed here"`},
		{"hangs", `sleep 30 & sleep 30`, 300 * time.Millisecond, []string{"did not finish within 300ms"}, "dns hook failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hook := filepath.Join(dir, c.name)
			if err := os.WriteFile(hook, []byte("#!/bin/sh\n"+c.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			h := &hookSolver{argv: []string{hook, "--zone", "example.com"}, timeout: c.timeout, log: slog.New(slog.NewTextHandler(&log, nil)), issuer: "test"}
			start := time.Now()
			err := h.Present(context.Background(), chal)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Present took %s: the hook (or its child) was not cut off", took)
			}
			for _, w := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to contain %q", err, w)
				}
			}
			if len(c.wantErr) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			if !strings.Contains(log.String(), c.wantLog) {
				t.Errorf("log lacks %q:\n%s", c.wantLog, log.String())
			}
		})
	}
	got, _ := os.ReadFile(args)
	if want := "--zone example.com present _acme-challenge.example.com. " + value + "\n"; string(got) != want {
		t.Errorf("the hook got %q, want %q", got, want)
	}
}

// TestHookOutputIsBounded: a hook that floods stderr costs tlsd a few KiB of it.
func TestHookOutputIsBounded(t *testing.T) {
	b := &limitedBuffer{max: 10}
	for range 100 {
		b.Write([]byte("0123456789"))
	}
	if b.Len() != 10 {
		t.Errorf("kept %d bytes, want 10", b.Len())
	}
}
