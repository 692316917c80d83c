package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tlsd/tlsd/admin"
)

// exitTimeout is tlsd status --wait-revision running out of time.
const exitTimeout = 3

// revisionWait is tlsd status --wait-revision: which revision, on which daemons, how long.
type revisionWait struct {
	rev     string
	admins  []string
	timeout time.Duration
	poll    time.Duration
}

// checkRevision refuses a REV that cannot name a commit or a digest: hex needs at least
// 7 digits (what git abbreviates to); anything else is matched whole, as a REVISION file's
// line.
func checkRevision(rev string) error {
	if rev == "" {
		return fmt.Errorf("--wait-revision: give a commit, a digest or a REVISION line")
	}
	if isHex(rev) && len(rev) < 7 {
		return fmt.Errorf("--wait-revision %q: give at least 7 hex digits of the commit or digest", rev)
	}
	return nil
}

func isHex(s string) bool {
	return strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// names reports whether rev names got: a prefix of a hex commit or digest, or the whole
// of another revision.
func names(rev, got string) bool {
	if got == "" {
		return false
	}
	if isHex(rev) && isHex(got) {
		return strings.HasPrefix(strings.ToLower(got), strings.ToLower(rev))
	}
	return rev == got
}

// adminState is what one daemon says of the revision waited for.
type adminState int

const (
	waiting adminState = iota
	serving
	refused
)

// judge reads one /status for w.rev.
func (w revisionWait) judge(st admin.Status) adminState {
	if c := st.Config; c != nil && (names(w.rev, c.Revision) || names(w.rev, c.Digest)) {
		return serving
	}
	if a := st.LastAttempt; !a.OK && names(w.rev, a.Revision) {
		return refused
	}
	return waiting
}

// run polls every daemon until all serve w.rev (exit 0), one refused it (exit 1 at once,
// with its diagnostics), or the timeout passes (exit 3).
func (w revisionWait) run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	state := map[string]adminState{}
	last := map[string]string{} // why each is not there yet
	for {
		for _, addr := range w.admins {
			if state[addr] == serving {
				continue
			}
			var st admin.Status
			if err := getJSON(addr, "/status", &st); err != nil {
				last[addr] = err.Error()
				continue
			}
			switch state[addr] = w.judge(st); state[addr] {
			case serving:
				fmt.Fprintf(out, "%s: serving %s (generation %d)\n", addr, w.rev, st.Generation)
			case refused:
				fmt.Fprintf(out, "%s: the reload of %s FAILED: %s; it still serves %s\n", addr, w.rev, st.LastAttempt.Error, servedText(st.Config))
				for _, d := range st.LastAttempt.Diagnostics {
					fmt.Fprintf(out, "  %s\n", d)
				}
				return &exitError{code: exitInvalid}
			default:
				last[addr] = "serves " + servedText(st.Config)
			}
		}
		if done := count(state, serving); done == len(w.admins) {
			fmt.Fprintf(out, "%s is live on %d of %d\n", w.rev, done, len(w.admins))
			return nil
		}
		select {
		case <-ctx.Done():
			return w.timedOut(out, state, last)
		case <-time.After(w.poll):
		}
	}
}

func (w revisionWait) timedOut(out io.Writer, state map[string]adminState, last map[string]string) error {
	for _, addr := range w.admins {
		if state[addr] != serving {
			fmt.Fprintf(out, "%s: not serving %s after %s: %s\n", addr, w.rev, w.timeout, last[addr])
		}
	}
	fmt.Fprintf(out, "%s is live on %d of %d\n", w.rev, count(state, serving), len(w.admins))
	return &exitError{code: exitTimeout}
}

func count(state map[string]adminState, want adminState) int {
	n := 0
	for _, s := range state {
		if s == want {
			n++
		}
	}
	return n
}

// servedText names the configuration a daemon serves, for a line of output.
func servedText(c *admin.ConfigStatus) string {
	if c == nil {
		return "no configuration yet"
	}
	return fmt.Sprintf("revision %s, digest %.12s", orUnknown(c.Revision), c.Digest)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
