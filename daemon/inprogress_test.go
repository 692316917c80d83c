package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlsd/tlsd/watch"
)

// prober connects to each of its names every 20 ms, as a monitoring system would, and
// counts the handshakes refused.
type prober struct {
	stopCh chan struct{}
	done   chan struct{}

	mu       sync.Mutex // guards the following fields
	attempts int
	refused  []string
}

func (e *env) startProber(names ...string) *prober {
	p := &prober{stopCh: make(chan struct{}), done: make(chan struct{})}
	addr := e.addr() // the listener stays even while its routes change
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for limit := time.Now().Add(time.Minute); time.Now().Before(limit); {
			select {
			case <-p.stopCh:
				return
			case <-tick.C:
			}
			for _, name := range names {
				p.probe(addr, name)
			}
		}
	}()
	return p
}

func (p *prober) probe(addr, name string) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if err != nil {
		p.refused = append(p.refused, fmt.Sprintf("%s at %s: %v", name, time.Now().Format("15:04:05.000"), err))
		return
	}
	c.Close()
}

// stop ends the probing and fails t if a single connection was refused.
func (p *prober) stop(t *testing.T) {
	t.Helper()
	close(p.stopCh)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.refused) > 0 {
		t.Errorf("%d of %d probes refused, first: %s", len(p.refused), p.attempts, p.refused[0])
	}
	if p.attempts == 0 {
		t.Error("the prober never ran")
	}
}

// waitServes waits until name is served and returns how long that took.
func (e *env) waitServes(t *testing.T, name string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if !eventually(within+2*time.Second, func() bool { return e.serves(name) }) {
		t.Fatalf("%s never served\n%s", name, e.log)
	}
	took := time.Since(start)
	if took > within {
		t.Errorf("%s served %s after the writer closed the file, want within %s", name, took.Round(time.Millisecond), within)
	}
	return took
}

// TestFilesBeingWritten: a file that is open for writing, truncated for a moment or
// written with pauses is not a configuration. Under a prober, none of these workflows
// refuses a single connection, and the final content serves within a second of the
// writer closing the file.
func TestFilesBeingWritten(t *testing.T) {
	t.Parallel()
	ab := func(up string) string { return endpointFile("a", up) + endpointFile("b", up) }
	workflows := []struct {
		name  string
		write func(t *testing.T, path, final string) // returns when the writer closed the file
	}{
		{"truncate, then write 300 ms later", func(t *testing.T, path, final string) {
			must(t, os.WriteFile(path, nil, 0o644)) // `: > f`
			time.Sleep(300 * time.Millisecond)
			must(t, os.WriteFile(path, []byte(final), 0o644))
		}},
		{"slow writer behind a shell redirect", func(t *testing.T, path, final string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0) // `(sleep 0.5; cat new) > f`
			must(t, err)
			time.Sleep(500 * time.Millisecond)
			f.WriteString(final)
			must(t, f.Close())
		}},
		{"writer pausing at a document boundary", func(t *testing.T, path, final string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			must(t, err)
			first := len(final) / 3
			for final[first-1] != '\n' || final[first:first+4] != "---\n" {
				first++
			}
			f.WriteString(final[:first+4])
			time.Sleep(500 * time.Millisecond)
			f.WriteString(final[first+4:])
			must(t, f.Close())
		}},
	}
	for _, wf := range workflows {
		t.Run(wf.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			up := newEchoServer(t, nil)
			dir := e.path("conf")
			path := filepath.Join(dir, "ab.yaml")
			writeFile(t, path, ab(up.addr()))
			e.runDir(dir)
			p := e.startProber("a.test", "b.test")
			wf.write(t, path, ab(up.addr())+endpointFile("c", up.addr()))
			took := e.waitServes(t, "c.test", time.Second)
			p.stop(t)
			t.Logf("final content served %s after the writer closed the file; %d probes, none refused", took.Round(time.Millisecond), p.attempts)
			e.log.waitFor(t, "reload waits: a file is being written")
		})
	}
}

// TestEmptyFileRemovesAfterHold: a file left empty does remove its endpoints, once it has
// stayed empty for watch.EmptyHold.
func TestEmptyFileRemovesAfterHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	dir := e.path("conf")
	writeFile(t, filepath.Join(dir, "keep.yaml"), endpointFile("keep", up.addr()))
	writeFile(t, filepath.Join(dir, "ab.yaml"), endpointFile("a", up.addr())+endpointFile("b", up.addr()))
	e.runDir(dir)
	emptied := time.Now()
	must(t, os.WriteFile(filepath.Join(dir, "ab.yaml"), nil, 0o644))
	if !eventually(watch.EmptyHold+2*time.Second, func() bool { return !e.serves("a.test") }) {
		t.Fatalf("a.test still served %s after its file was emptied", time.Since(emptied))
	}
	if took := time.Since(emptied); took < watch.EmptyHold {
		t.Errorf("endpoints of an emptied file went after %s, before the %s hold", took, watch.EmptyHold)
	}
	if e.serves("b.test") || !e.serves("keep.test") {
		t.Error("want b.test gone with a.test, keep.test served")
	}
}
