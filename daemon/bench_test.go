package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsd/tlsd/schema"
)

// sink accepts connections, answers one byte (as a TLS server answers a ClientHello), and
// discards what they send.
func sink(b testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); c.Write([]byte{22}); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// helloBytes is a real ClientHello for sni, to open a passthrough route.
func helloBytes(b testing.TB, sni string) []byte {
	client, server := net.Pipe()
	go func() {
		tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		client.Close()
	}()
	buf := make([]byte, 4096)
	n, _ := server.Read(buf)
	server.Close()
	return buf[:n]
}

// BenchmarkPassthroughCopy measures tlsd's passthrough copy: after the ClientHello, bulk
// bytes go client -> tlsd -> upstream on loopback (spliced in the kernel).
func BenchmarkPassthroughCopy(b *testing.B) {
	e := newEnv(b)
	up := sink(b)
	e.start(yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", ""))
	c, err := net.Dial("tcp", e.addr())
	must(b, err)
	defer c.Close()
	if _, err := c.Write(helloBytes(b, "bulk.test")); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEdgeHandshake is full TLS 1.3 handshakes (ECDSA P-256 from the internal
// issuer) through tlsd's edge termination path, each followed by one echoed byte.
func BenchmarkEdgeHandshake(b *testing.B) {
	for _, c := range []struct {
		name   string
		curves []tls.CurveID
	}{{"X25519", []tls.CurveID{tls.X25519}}, {"X25519MLKEM768", nil}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			echo := newEchoServer(b, nil)
			e.start(yamlEndpoint("edge", "edge.test", echo.addr(), "edge", "  issuer: internal\n"))
			cfg := &tls.Config{ServerName: "edge.test", RootCAs: e.internalRoots(), CurvePreferences: c.curves}
			one := []byte{1}
			b.ReportAllocs()
			for b.Loop() {
				tc, err := tls.Dial("tcp", e.addr(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				tc.Write(one)
				io.ReadFull(tc, one)
				tc.Close()
			}
		})
	}
}

// BenchmarkReloadLatency is the time from a configuration file renamed into place to the
// new endpoint completing a handshake, through the watcher with the default debounce.
func BenchmarkReloadLatency(b *testing.B) {
	e := newEnv(b)
	up := newEchoServer(b, nil)
	dir := e.path("conf")
	writeFile(b, filepath.Join(dir, "base.yaml"), yamlEndpoint("base", "base.test", up.addr(), "", ""))
	e.runDir(dir)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("n%d", i)
		tmp := filepath.Join(dir, ".new.tmp")
		writeFile(b, tmp, yamlEndpoint(name, name+".test", up.addr(), "edge", "  issuer: internal\n"))
		start := time.Now()
		must(b, os.Rename(tmp, filepath.Join(dir, "new.yaml")))
		for !e.serves(name + ".test") {
			if time.Since(start) > 5*time.Second {
				b.Fatalf("%s never served", name)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "ms-median")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Milliseconds()), "ms-p99")
}

// BenchmarkApplyOneChange is the apply step (build, bind, switch; loading excluded, and
// the configuration's identity, computed after the switch) for one changed endpoint in a
// 10,000-endpoint configuration; BenchmarkIdentify is that identity.
func BenchmarkApplyOneChange(b *testing.B) {
	e := newEnv(b)
	configs := [2]*schema.Config{}
	for v := range configs {
		var sb strings.Builder
		for i := range 10_000 {
			up := "127.0.0.1:9000"
			if i == 5000 && v == 1 {
				up = "127.0.0.1:9001"
			}
			sb.WriteString(yamlEndpoint(fmt.Sprintf("ep-%d", i), fmt.Sprintf("ep-%d.example.com", i), up, "", ""))
		}
		path := e.path(fmt.Sprintf("v%d.yaml", v))
		writeFile(b, path, sb.String())
		res, err := schema.Load(schema.Options{}, path)
		must(b, err)
		configs[v] = res.Config
	}
	d, err := Start(configs[0], Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, Logger: slogTo(io.Discard)})
	must(b, err)
	defer d.Shutdown(context.Background())
	n := 0
	for b.Loop() {
		n++
		if _, err := d.apply(configs[n%2]); err != nil {
			b.Fatal(err)
		}
	}
	if d.Generation() < 2 {
		b.Fatal("nothing applied")
	}
	b.ReportMetric(float64(rssKB(b))/1024, "MB-RSS")
}

// BenchmarkIdentify is the configuration's identity (digest and revision) of 10,000
// endpoints, computed after each applied reload.
func BenchmarkIdentify(b *testing.B) {
	e := newEnv(b)
	var sb strings.Builder
	for i := range 10_000 {
		sb.WriteString(yamlEndpoint(fmt.Sprintf("ep-%d", i), fmt.Sprintf("ep-%d.example.com", i), "127.0.0.1:9000", "", ""))
	}
	writeFile(b, e.path("big.yaml"), sb.String())
	cfg := loadConfig(b, e.path("big.yaml"))
	for b.Loop() {
		identify(cfg)
	}
}

func rssKB(b *testing.B) int {
	data, err := os.ReadFile("/proc/self/status")
	must(b, err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}

// BenchmarkSplitPassthrough compares passthrough through tlsd run with the same through
// an edge and an agent joined by the tunnel (both in this process), and the direct path:
// bulk throughput, and the setup of a connection (connect, ClientHello, first byte back).
func BenchmarkSplitPassthrough(b *testing.B) {
	up := sink(b)
	hello := helloBytes(b, "bulk.test")
	run := newEnv(b)
	run.start(yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", ""))
	split := startSplit(b, yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", "")+"agent: api-agent\n", nil)
	targets := []struct{ name, addr string }{{"direct", up.Addr().String()}, {"run", run.addr()}, {"edge+agent", split.addr()}}
	for _, tg := range targets {
		b.Run("bulk/"+tg.name, func(b *testing.B) {
			c := openPassthrough(b, tg.addr, hello)
			defer c.Close()
			chunk := make([]byte, 256<<10)
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, tg := range targets {
		b.Run("setup/"+tg.name, func(b *testing.B) { setupLoop(b, tg.addr, hello) })
	}
}

// setupLoop opens and closes passthrough connections to addr for the benchmark's
// iterations: connect, the ClientHello out, the upstream's first byte back.
func setupLoop(b *testing.B, addr string, hello []byte) {
	one := make([]byte, 1)
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(hello)
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// openPassthrough opens a passthrough connection: the ClientHello out, the upstream's
// one-byte answer (see sink) back.
func openPassthrough(t testing.TB, addr string, hello []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	must(t, err)
	_, err = c.Write(hello)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 1))
	}
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

func countPipes(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	n := 0
	for _, e := range entries {
		if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// TestIdlePassthroughHoldsNoPipes: an idle passthrough connection holds its two sockets,
// not splice pipes, so descriptors do not run out at a few thousand connections.
func TestIdlePassthroughHoldsNoPipes(t *testing.T) {
	up := sink(t)
	e := newEnv(t)
	e.start(yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", ""))
	hello := helloBytes(t, "bulk.test")
	before := countPipes(t)
	var conns []net.Conn
	for range 50 {
		c := openPassthrough(t, e.addr(), hello)
		defer c.Close()
		c.Write(make([]byte, 100<<10)) // one burst, spliced, then idle
		conns = append(conns, c)
	}
	// The bursts drain, then their pipes go back to the pool (which keeps at most 16).
	if !eventually(5*time.Second, func() bool { return countPipes(t)-before <= 2*16 }) {
		t.Errorf("%d pipe descriptors for %d idle connections: pipes are held while idle", countPipes(t)-before, len(conns))
	}
}

// dataPlaneGoroutines counts the goroutines in tlsd's copy paths and connection handlers.
func dataPlaneGoroutines(t testing.TB) int {
	var b strings.Builder
	must(t, pprof.Lookup("goroutine").WriteTo(&b, 2))
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "tlsd/relay.") || strings.Contains(g, "tlsd/edge.(*Server).handle") {
			n++
		}
	}
	return n
}

// TestIdleConnectionsGoroutines: once quiet, a passthrough connection holds no goroutine
// and a terminated one holds one (its TLS read), however many are open.
func TestIdleConnectionsGoroutines(t *testing.T) {
	up := sink(t)
	e := newEnv(t)
	e.start(yamlEndpoint("pt", "pt.test", up.Addr().String(), "", "") +
		yamlEndpoint("term", "term.test", up.Addr().String(), "edge", "  issuer: internal\n"))
	hello := helloBytes(t, "pt.test")
	const n = 40
	for range n {
		c := openPassthrough(t, e.addr(), hello)
		defer c.Close()
		c.Write([]byte("a request"))
		tc, err := e.dialTLS(&tls.Config{ServerName: "term.test", RootCAs: e.internalRoots()})
		must(t, err)
		defer tc.Close()
		tc.Write([]byte("a request"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for dataPlaneGoroutines(t) > n+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := dataPlaneGoroutines(t); g > n+2 {
		t.Errorf("%d idle passthrough and %d idle terminated connections hold %d goroutines, want about %d", n, n, g, n)
	}
}

// BenchmarkPassthroughSetupAccess is the setup of passthrough connections (connect,
// ClientHello, the upstream's first byte back) on an endpoint open to all, on one whose
// ip_restriction allows 10,000 disjoint prefixes, the client's among them, and on one
// with every limit and timeout set (none reached). conns/cpu-s
// counts the whole process (client, tlsd and upstream), so ratios between the two are
// what to read.
func BenchmarkPassthroughSetupAccess(b *testing.B) {
	up := sink(b)
	hello := helloBytes(b, "bulk.test")
	// Two IPPolicy documents of 5,000 prefixes: one document holds 10,000 values at most.
	var policies strings.Builder
	for i := range 10_000 {
		if i%5000 == 0 {
			fmt.Fprintf(&policies, "---\napiVersion: tlsd/v1\nkind: IPPolicy\nname: p%d\nallow_cidrs:\n", i/5000)
		}
		if i == 9_999 {
			policies.WriteString("  - 127.0.0.1\n")
			break
		}
		fmt.Fprintf(&policies, "  - 10.%d.%d.0/25\n", i/256, i%256) // apart: no two merge
	}
	for _, c := range []struct{ name, restriction string }{
		{"open", ""},
		{"allow-10000", "ip_restriction:\n  policies: [p0, p1]\n" + policies.String()},
		{"limits", "limits: {max_connections: 1000000, max_connections_per_ip: 1000000, rate_per_ip: \"1000000/s\"}\n" +
			"timeouts: {idle: 1h, max_lifetime: 24h}\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			e.start(yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", "") + c.restriction)
			cpu := processCPU()
			setupLoop(b, e.addr(), hello)
			b.ReportMetric(float64(b.N)/(processCPU()-cpu).Seconds(), "conns/cpu-s")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// quietSink answers each connection's ClientHello with one byte and then only waits:
// an upstream that costs the heap next to nothing per connection.
func quietSink(b testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	acceptEach(b, ln, func(c net.Conn) { defer c.Close(); c.Write([]byte{22}); c.Read(make([]byte, 1)) })
	return ln
}

// BenchmarkHalfSentHellos holds 10,000 connections that sent half a ClientHello, with
// --max-handshakes 1000 (the thousand admitted hold their bytes, the rest are closed at
// once) and without a bound (9,000 then), and reports the growth of heap and RSS (the clients' side
// included). Run it once: -benchtime 1x.
func BenchmarkHalfSentHellos(b *testing.B) {
	up := quietSink(b)
	hello := helloBytes(b, "pt.test")
	// Unbounded, every connection holds a descriptor on both sides: 9,000 fit in the
	// 20,000 descriptors a test process gets.
	for _, c := range []struct {
		name   string
		max, n int
	}{{"max-handshakes-1000", 1000, 10_000}, {"unbounded-9000", -1, 9_000}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			e.start(yamlEndpoint("pt", "pt.test", up.Addr().String(), "", ""), func(o *Options) { o.MaxHandshakes = c.max })
			for b.Loop() {
				halfSentHellos(b, e.addr(), hello[:len(hello)/2], c.n)
			}
		})
	}
}

func halfSentHellos(b *testing.B, addr string, half []byte, n int) {
	before, rssBefore := heapInUse(), rssKB(b)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatalf("after %d connections: %v", len(conns), err)
		}
		c.Write(half)
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // every accepted connection has read its half
	b.ReportMetric(float64(heapInUse()-before)/(1<<20), "MB-heap")
	b.ReportMetric(float64(rssKB(b)-rssBefore)/1024, "MB-RSS")
}

// BenchmarkPassthroughSetupPool is the setup of passthrough connections to a single
// upstream and through a round-robin pool of three (whole-process CPU, as in
// BenchmarkPassthroughSetupAccess).
func BenchmarkPassthroughSetupPool(b *testing.B) {
	hello := helloBytes(b, "bulk.test")
	ups := []string{sink(b).Addr().String(), sink(b).Addr().String(), sink(b).Addr().String()}
	for _, c := range []struct{ name, config string }{
		{"single", yamlEndpoint("bulk", "bulk.test", ups[0], "", "")},
		{"pool-3", "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: bulk\ndomain: bulk.test\nupstreams: [" + strings.Join(ups, ", ") + "]\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			e.start(c.config)
			cpu := processCPU()
			setupLoop(b, e.addr(), hello)
			b.ReportMetric(float64(b.N)/(processCPU()-cpu).Seconds(), "conns/cpu-s")
		})
	}
}

// BenchmarkShrinkGivesMemoryBack adds 100,000 endpoints to a running daemon, then
// removes them all, and reports the process's RSS at each step: what a configuration
// that shrank leaves held.
func BenchmarkShrinkGivesMemoryBack(b *testing.B) {
	e := newEnv(b)
	big, small := e.path("big"), e.path("small")
	must(b, os.MkdirAll(big, 0o755))
	must(b, os.MkdirAll(small, 0o755))
	for f := range 100 {
		var sb strings.Builder
		for i := range 1000 {
			n := f*1000 + i
			sb.WriteString(yamlEndpoint(fmt.Sprintf("ep-%d", n), fmt.Sprintf("ep-%d.example.com", n), "127.0.0.1:9000", "", ""))
		}
		writeFile(b, filepath.Join(big, fmt.Sprintf("f%03d.yaml", f)), sb.String())
	}
	writeFile(b, filepath.Join(small, "one.yaml"), yamlEndpoint("ep-0", "ep-0.example.com", "127.0.0.1:9000", "", ""))
	d, err := Start(loadConfig(b, small), Options{Listen: "127.0.0.1:0", StateDir: e.stateDir, Logger: slogTo(io.Discard)})
	must(b, err)
	defer d.Shutdown(context.Background())
	apply := func(dir string) {
		_, err := d.Apply(loadConfig(b, dir))
		must(b, err)
	}
	start := rssKB(b)
	var peak, after int
	var shrink time.Duration
	for b.Loop() {
		apply(big)
		peak = max(peak, rssKB(b))
		t0 := time.Now()
		apply(small)
		shrink += time.Since(t0)
		after = rssKB(b)
	}
	b.ReportMetric(float64(shrink.Milliseconds())/float64(b.N), "ms-shrink-apply")
	b.ReportMetric(float64(heapInUse())/(1<<20), "MB-heap-after")
	b.ReportMetric(float64(start)/1024, "MB-RSS-start")
	b.ReportMetric(float64(peak)/1024, "MB-RSS-peak")
	b.ReportMetric(float64(after)/1024, "MB-RSS-after")
}
