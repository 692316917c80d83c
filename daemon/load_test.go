package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/schema"
)

var soak = flag.Bool("soak", false, "run the reload soak: 1,000 reloads under load (make soak)")

// loadWorld is the reload-under-load scenario: stable endpoints in all three modes, and
// endpoints whose configuration keeps changing.
type loadWorld struct {
	*env
	dir, listen string
	plain, zk   *echoServer
	busy        net.Listener // a port taken by someone else
	rotCrt      string
	rotKey      string
	rotSerial   atomic.Value // string: serial of the latest rotated certificate
	mu          sync.Mutex
	longLived   []*longConn
	stop        chan struct{}
	wg          sync.WaitGroup
	newOK       atomic.Int64
	newFailed   atomic.Int64
	failures    sync.Map // reason -> count, for the report
}

type longConn struct {
	name    string
	c       net.Conn
	bytes   atomic.Int64
	dropped atomic.Bool
	err     atomic.Value
}

func newLoadWorld(t *testing.T) *loadWorld {
	e := newEnv(t)
	w := &loadWorld{env: e, dir: e.path("conf"), listen: e.preBind(), plain: newEchoServer(t, nil),
		zk: e.tlsUpstream("stable-zk.test", "flip.test"), stop: make(chan struct{})}
	e.leaf(e.agentCA, "agent", "stable-agent.test")
	var err error
	w.busy, err = net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { w.busy.Close() })
	w.rotCrt, w.rotKey = e.path("certs/rot.crt"), e.path("certs/rot.key")
	must(t, os.MkdirAll(filepath.Dir(w.rotCrt), 0o700))
	w.rotate()
	return w
}

// rotate issues a new certificate for rot.test in place.
func (w *loadWorld) rotate() {
	p, err := w.agentCA.Issue(testpki.Options{CommonName: "rot.test", DNSNames: []string{"rot.test"}})
	must(w.t, err)
	must(w.t, p.WriteFiles(w.rotCrt+".tmp", w.rotKey+".tmp"))
	must(w.t, os.Rename(w.rotKey+".tmp", w.rotKey))
	must(w.t, os.Rename(w.rotCrt+".tmp", w.rotCrt))
	w.rotSerial.Store(p.Cert.SerialNumber.String())
}

func (w *loadWorld) stable() string {
	internal := "  issuer: internal\n"
	return yamlEndpoint("stable-edge", "stable-edge.test", w.plain.addr(), "edge", internal) +
		yamlEndpoint("stable-agent", "stable-agent.test", w.plain.addr(), "agent", "  certificate: {crt: ../agent.crt, key: ../agent.key}\n") +
		yamlEndpoint("stable-zk", "stable-zk.test", w.zk.addr(), "", "") +
		yamlEndpoint("rot", "rot.test", w.plain.addr(), "edge", fmt.Sprintf("  certificate: {crt: %s, key: %s}\n", w.rotCrt, w.rotKey))
}

// step writes the configuration of reload number i: a cycle of the changes operators make.
func (w *loadWorld) step(i int) (wantApplied bool) {
	files := map[string]string{"stable.yaml": w.stable()}
	flip := yamlEndpoint("flip", "flip.test", w.zk.addr(), "", "")
	if i%2 == 1 {
		flip = yamlEndpoint("flip", "flip.test", w.plain.addr(), "edge", "  issuer: internal\n")
	}
	files["flip.yaml"] = flip
	minVersion := []string{"1.2", "1.3"}[i/2%2]
	files["min.yaml"] = yamlEndpoint("min", "min.test", w.plain.addr(), "edge", "  issuer: internal\n  min_version: \""+minVersion+"\"\n")
	if i%3 != 0 {
		files["churn.yaml"] = yamlEndpoint(fmt.Sprintf("churn-%d", i%7), fmt.Sprintf("churn-%d.test", i%7), w.plain.addr(), "", "")
	}
	wantApplied = true
	switch i % 10 {
	case 4:
		w.rotate()
	case 7:
		files["broken.yaml"] = "apiVersion: tlsd/v1\nkind: Endpoint\nname: broken\ndomain: [" // half-written
		wantApplied = false
	case 8:
		files["conflict.yaml"] = yamlEndpoint("conflict", "conflict.test", w.plain.addr(), "", "") + "listen: " + w.busy.Addr().String() + "\n"
		wantApplied = false
	}
	w.writeAll(files)
	return wantApplied
}

// writeAll replaces the directory's files as a deploy would: write new, rename over,
// remove those no longer wanted.
func (w *loadWorld) writeAll(files map[string]string) {
	must(w.t, os.MkdirAll(w.dir, 0o755))
	for name, content := range files {
		tmp := filepath.Join(w.dir, "."+name+".tmp")
		must(w.t, os.WriteFile(tmp, []byte(content), 0o644))
		must(w.t, os.Rename(tmp, filepath.Join(w.dir, name)))
	}
	entries, _ := os.ReadDir(w.dir)
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && !strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(w.dir, e.Name()))
		}
	}
}

func (w *loadWorld) clientConfig(name string) *tls.Config {
	cfg := &tls.Config{ServerName: name}
	switch name {
	case "stable-zk.test", "flip.test":
		cfg.RootCAs = pool(w.upstreamCA)
	case "stable-agent.test", "rot.test":
		cfg.RootCAs = pool(w.agentCA)
	default:
		cfg.RootCAs = w.internalRoots()
	}
	return cfg
}

func (w *loadWorld) dial(name string) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", w.listen, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, w.clientConfig(name))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// openLongLived opens a connection that echoes random chunks until the end, checking
// every byte.
func (w *loadWorld) openLongLived(name string) {
	c, err := w.dial(name)
	must(w.t, err)
	lc := &longConn{name: name, c: c}
	w.mu.Lock()
	w.longLived = append(w.longLived, lc)
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		buf, got := make([]byte, 4096), make([]byte, 4096)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			rand.Read(buf)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Write(buf)
			if err == nil {
				_, err = io.ReadFull(c, got)
			}
			if err == nil && !bytes.Equal(buf, got) {
				err = errors.New("echo differs")
			}
			if err != nil {
				lc.dropped.Store(true)
				lc.err.Store(err.Error())
				return
			}
			lc.bytes.Add(int64(len(buf)))
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

// churnNew keeps opening short connections to endpoints that stay valid throughout.
func (w *loadWorld) churnNew(workers int) {
	names := []string{"stable-edge.test", "stable-agent.test", "stable-zk.test", "rot.test"}
	for i := range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for n := i; ; n++ {
				select {
				case <-w.stop:
					return
				default:
				}
				name := names[n%len(names)]
				c, err := w.dial(name)
				if err == nil {
					msg := []byte("new connection " + name)
					var got []byte
					got, err = roundTrip(c, msg)
					if err == nil && !bytes.Equal(got, msg) {
						err = errors.New("echo differs")
					}
					c.Close()
				}
				if err != nil {
					w.newFailed.Add(1)
					v, _ := w.failures.LoadOrStore(name+": "+err.Error(), new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
					continue
				}
				w.newOK.Add(1)
			}
		}()
	}
}

type loadReport struct {
	reloads, applied, longDropped int
	newOK, newFailed              int64
	longBytes                     int64
	failures                      []string
}

func (r loadReport) String() string {
	return fmt.Sprintf("%d reload steps (%d applied), %d long-lived dropped, %d new connections ok, %d failed, %d bytes echoed on long-lived; failures: %v",
		r.reloads, r.applied, r.longDropped, r.newOK, r.newFailed, r.longBytes, r.failures)
}

// exercise runs steps reloads under load. reload is what happens between steps: waiting
// for the watcher (tlsd's way) or a hard restart (the negative control).
func (w *loadWorld) exercise(steps int, reload func(i int, wantApplied bool)) loadReport {
	// Long-lived connections on the stable endpoints and on those about to change: an
	// open connection keeps the settings it was accepted with, whatever happens next.
	for _, name := range []string{"stable-edge.test", "stable-agent.test", "stable-zk.test", "rot.test", "flip.test", "min.test"} {
		w.openLongLived(name)
	}
	w.churnNew(4)
	applied := 0
	for i := 1; i <= steps; i++ {
		want := w.step(i)
		reload(i, want)
		if want {
			applied++
		}
		if i%3 == 0 && want { // the churn endpoint of the step before is gone: refused
			gone := fmt.Sprintf("churn-%d.test", (i-1)%7)
			if c, err := w.dial(gone); err == nil {
				c.Close()
				w.t.Errorf("step %d: removed endpoint %s still accepts new connections", i, gone)
			} else if !strings.Contains(err.Error(), "unrecognized name") {
				w.t.Errorf("step %d: removed endpoint %s: %v, want unrecognized name", i, gone, err)
			}
		}
		if i%10 == 4 { // rotated: new handshakes must see the new certificate
			c, err := w.dial("rot.test")
			if err == nil {
				serial := c.ConnectionState().PeerCertificates[0].SerialNumber.String()
				c.Close()
				if serial != w.rotSerial.Load().(string) {
					w.t.Errorf("step %d: rot.test still presents the old certificate", i)
				}
			}
		}
	}
	close(w.stop)
	w.wg.Wait()
	r := loadReport{reloads: steps, applied: applied, newOK: w.newOK.Load(), newFailed: w.newFailed.Load()}
	for _, lc := range w.longLived {
		if lc.dropped.Load() {
			r.longDropped++
			r.failures = append(r.failures, lc.name+": "+fmt.Sprint(lc.err.Load()))
		}
		r.longBytes += lc.bytes.Load()
		lc.c.Close()
	}
	w.failures.Range(func(k, v any) bool {
		r.failures = append(r.failures, fmt.Sprintf("%s (x%d)", k, v.(*atomic.Int64).Load()))
		return true
	})
	return r
}

// TestReloadUnderLoad: hundreds of configuration changes through the watcher while
// long-lived connections echo and new ones keep coming: nothing may drop.
func TestReloadUnderLoad(t *testing.T) {
	steps := 60
	if *soak {
		steps = 1000
	}
	w := newLoadWorld(t)
	w.step(0)
	w.runDir(w.dir, func(o *RunOptions) { o.Listen = w.listen; o.Debounce = 20 * time.Millisecond })
	fdsBefore := openFDs(t)
	r := w.exercise(steps, func(i int, wantApplied bool) {
		before := w.d.Generation()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			st := w.d.Status()
			if wantApplied && w.d.Generation() > before {
				return
			}
			if !wantApplied && !st.LastAttempt.OK && st.LastAttempt.At.After(time.Now().Add(-time.Second)) {
				if w.d.Generation() != before {
					t.Errorf("step %d: a broken configuration was applied", i)
				}
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("step %d: reload not seen (generation %d, last attempt %+v)", i, w.d.Generation(), w.d.Status().LastAttempt)
	})
	t.Log(r)
	if r.longDropped > 0 || r.newFailed > 0 {
		t.Errorf("dropped: %s", r)
	}
	if r.newOK == 0 || r.longBytes == 0 {
		t.Errorf("no load was applied: %s", r)
	}
	// Everything drained: back to the configuration of step 0, no connection left open,
	// file descriptors back to where they were.
	w.step(0)
	w.waitQuiet()
	// The echo upstreams close their side soon after; Go keeps the pipes splice(2)
	// needs in a sync.Pool, which two collections empty.
	deadline := time.Now().Add(3 * time.Second)
	for openFDs(t) > fdsBefore+4 && time.Now().Before(deadline) {
		relay.ReleaseIdlePipes()
		runtime.GC()
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	if fds := openFDs(t); fds > fdsBefore+4 {
		t.Errorf("%d file descriptors open after draining, %d before the load", fds, fdsBefore)
		entries, _ := os.ReadDir("/proc/self/fd")
		for _, e := range entries {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			t.Logf("fd %s -> %s", e.Name(), target)
		}
	}
}

// waitQuiet waits until no connection is open anywhere in the daemon.
func (w *loadWorld) waitQuiet() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		open := 0
		for _, e := range w.d.Status().Endpoints {
			open += e.ActiveConnections
		}
		if open == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Errorf("connections still open after the load: %+v", w.d.Status().Endpoints)
}

func openFDs(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(entries)
}

// TestReloadNegativeControl runs the same harness against hard restarts (stop, start
// again) instead of hot reloads. It must see drops, or TestReloadUnderLoad's zero
// proves nothing.
func TestReloadNegativeControl(t *testing.T) {
	w := newLoadWorld(t)
	w.step(0)
	start := func() {
		res, err := schema.Load(schema.Options{}, w.dir)
		must(t, err)
		for res.Config == nil { // the step wrote a broken file: a restart would fail; use the last good
			t.Fatal("negative control needs valid steps")
		}
		w.d, err = Start(res.Config, Options{Listen: w.listen, StateDir: w.stateDir, HandshakeTimeout: 5 * time.Second, Logger: slogTo(w.log),
			Bind: w.sockets.bind})
		must(t, err)
	}
	start()
	r := w.exercise(5, func(i int, _ bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		w.d.Shutdown(ctx) // a restart: open connections are cut
		cancel()
		os.Remove(filepath.Join(w.dir, "broken.yaml"))
		os.Remove(filepath.Join(w.dir, "conflict.yaml"))
		time.Sleep(50 * time.Millisecond)
		start()
	})
	w.d.Shutdown(context.Background())
	t.Log(r)
	if r.longDropped == 0 && r.newFailed == 0 {
		t.Errorf("the harness saw no drops across hard restarts: it cannot see drops at all: %s", r)
	}
	_ = x509.NewCertPool
}
