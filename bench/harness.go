package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options tune a harness run.
type Options struct {
	TLSD      string        // the tlsd binary
	Dir       string        // scratch directory
	Runs      int           // repetitions of each case, interleaved across servers
	Duration  time.Duration // of each timed run
	IdleConns int           // connections held open for the memory cases
	Peers     bool          // also run HAProxy and nginx
	Log       io.Writer     // progress
	// Only, if set, keeps the cases whose name it matches (route scale is the case
	// "passthrough new connections by routes").
	Only *regexp.Regexp
	// ProfileDir, if set, receives a CPU profile of tlsd for every timed case and a heap
	// and goroutine profile for the idle ones, for `go tool pprof`.
	ProfileDir string
}

// Result is one figure of one server: every run's value.
type Result struct {
	Case, Metric, Server string
	Values               []float64
	Note                 string // negotiated TLS parameters
}

// Median of the runs.
func (r Result) Median() float64 {
	v := slices.Clone(r.Values)
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

type measure func(s *Server) (map[string]float64, string, error)

// Run measures every case on every server and returns the results.
func Run(o Options) ([]Result, error) {
	w, err := NewWorld(o.Dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	hello, err := HelloBytes("pt.test")
	if err != nil {
		return nil, err
	}
	servers := []func() (*Server, error){
		func() (*Server, error) { return StartTLSD(w, o.TLSD, 0, o.ProfileDir != "", false) },
		func() (*Server, error) { return StartTLSD(w, o.TLSD, 0, o.ProfileDir != "", true) },
		func() (*Server, error) { return StartSplitTLSD(w, o.TLSD, o.ProfileDir != "") },
	}
	if o.Peers {
		servers = append(servers, func() (*Server, error) { return StartHAProxy(w) }, func() (*Server, error) { return StartNginx(w) })
	}
	var results []Result
	add := func(c, metric, server string, v float64, note string) {
		for i := range results {
			if r := &results[i]; r.Case == c && r.Metric == metric && r.Server == server {
				r.Values = append(r.Values, v)
				if note != "" {
					r.Note = note
				}
				return
			}
		}
		results = append(results, Result{Case: c, Metric: metric, Server: server, Values: []float64{v}, Note: note})
	}
	cases := cases(w, hello, o)
	for run := 1; run <= o.Runs; run++ {
		// Direct: the physical reference, no server in between.
		echoHello, err := HelloBytes("echo.test")
		if err != nil {
			return nil, err
		}
		if p50, p99, err := latencyPercentiles(w.EchoPT, echoHello, o.Duration); err != nil {
			return nil, fmt.Errorf("direct latency: %w", err)
		} else {
			add(pingCase, "p50 µs", "direct", p50, "")
			add(pingCase, "p99 µs", "direct", p99, "")
		}
		for _, c := range []int{1, 8} {
			n, err := Bulk(w.Sink, hello, nil, c, o.Duration)
			if err != nil {
				return nil, fmt.Errorf("direct bulk: %w", err)
			}
			add(fmt.Sprintf("passthrough bulk, %d conn", c), "Gbit/s", "direct", gbit(n, o.Duration), "")
		}
		for _, start := range servers {
			s, err := start()
			if err != nil {
				if s != nil {
					s.Stop()
				}
				return nil, err
			}
			for _, c := range cases {
				if s.Cases != nil && !s.Cases.MatchString(c.name) {
					continue
				}
				fmt.Fprintf(o.Log, "run %d/%d: %s: %s\n", run, o.Runs, s.Name, c.name)
				var profiled func()
				if c.timed {
					profiled = s.profileCPU(o.ProfileDir, c.name, run, o.Duration)
				}
				cpu0 := CPUSeconds(s.Pids())
				values, note, err := c.fn(s)
				if profiled != nil {
					profiled()
				}
				if err != nil {
					s.Stop()
					return nil, fmt.Errorf("%s, %s: %w", s.Name, c.name, err)
				}
				cpu := CPUSeconds(s.Pids()) - cpu0
				for metric, v := range values {
					switch {
					case strings.HasSuffix(metric, "/CPU-s"):
						v = safeDiv(v, cpu)
					case strings.HasPrefix(metric, "CPU-s per"):
						v = safeDiv(cpu, v)
					}
					add(c.name, metric, s.Name, v, note)
				}
			}
			s.Stop()
		}
		addedLatency(results, run, add)
		if o.Only == nil || o.Only.MatchString(routeScaleCase) {
			if err := routeScale(w, hello, o, add); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

const pingCase = "1 KiB ping-pong, 10 conns, 2,000 msg/s"

// addedLatency records, for this run, each server's ping-pong latency over the direct
// path measured in the same run: on a busy machine every figure moves with the load,
// and the difference within a run is what is tlsd's.
func addedLatency(results []Result, run int, add func(c, metric, server string, v float64, note string)) {
	direct := map[string]float64{}
	for _, r := range results {
		if r.Case == pingCase && r.Server == "direct" && len(r.Values) >= run {
			direct[r.Metric] = r.Values[run-1]
		}
	}
	for _, r := range results {
		if d, ok := direct[r.Metric]; ok && r.Case == pingCase && r.Server != "direct" && len(r.Values) >= run {
			add(pingCase, "added "+r.Metric, r.Server, r.Values[run-1]-d, "")
		}
	}
}

type namedCase struct {
	name  string
	fn    measure
	timed bool // runs for Options.Duration
}

// cases are the figures of the table. Metrics named ".../CPU-s" are divided by the
// server's CPU time during the case, "CPU-s per ..." divide it.
func cases(w *World, hello []byte, o Options) []namedCase {
	all := allCases(w, hello, o)
	if o.Only != nil {
		all = slices.DeleteFunc(all, func(c namedCase) bool { return !o.Only.MatchString(c.name) })
	}
	return all
}

func allCases(w *World, hello []byte, o Options) []namedCase {
	d := o.Duration
	return []namedCase{
		{name: "idle RSS per connection, passthrough", fn: func(s *Server) (map[string]float64, string, error) {
			return idleRSS(s, s.PT, hello, nil, o)
		}},
		{name: "idle RSS per connection, terminated", fn: func(s *Server) (map[string]float64, string, error) {
			return idleRSS(s, s.Term, nil, w.TermConfig(), o)
		}},
		{name: "idle RSS per connection, re-encrypted", fn: func(s *Server) (map[string]float64, string, error) {
			return idleRSS(s, s.TermBulkReencrypt, nil, w.TermConfig(), o)
		}},
		{name: pingCase, timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			echoHello, err := HelloBytes("echo.test")
			if err != nil {
				return nil, "", err
			}
			p50, p99, err := latencyPercentiles(s.PT, echoHello, d)
			return map[string]float64{"p50 µs": p50, "p99 µs": p99}, "", err
		}},
		{name: "passthrough bulk, 1 conn", timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, err := Bulk(s.PT, hello, nil, 1, d)
			return map[string]float64{"Gbit/s": gbit(n, d), "CPU-s per GB": float64(n) / 1e9}, "", err
		}},
		{name: "passthrough bulk, 8 conn", timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, err := Bulk(s.PT, hello, nil, 8, d)
			return map[string]float64{"Gbit/s": gbit(n, d), "CPU-s per GB": float64(n) / 1e9}, "", err
		}},
		{name: connRateCase, timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, err := ConnRate(s.PT, hello, 8, d)
			return map[string]float64{"conn/s": float64(n) / d.Seconds(), "conn/CPU-s": float64(n)}, "", err
		}},
		{name: firstRequestCase, fn: func(s *Server) (map[string]float64, string, error) {
			d, err := FirstRequest(s.Term, w.TermConfig(), 50)
			return map[string]float64{"ms": float64(d.Microseconds()) / 1000}, "", err
		}},
		{name: "TLS 1.3 full handshakes", timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, neg, err := Handshakes(s.Term, w.TermConfig(), false, 8, d)
			return map[string]float64{"hs/s": float64(n) / d.Seconds(), "hs/CPU-s": float64(n)}, neg, err
		}},
		{name: "TLS 1.3 resumed handshakes", timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, neg, err := Handshakes(s.Term, w.TermConfig(), true, 8, d)
			return map[string]float64{"hs/s": float64(n) / d.Seconds(), "hs/CPU-s": float64(n)}, neg, err
		}},
		{name: "terminated bulk, 1 conn", timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, err := Bulk(s.TermBulk, nil, w.TermConfig(), 1, d)
			return map[string]float64{"Gbit/s": gbit(n, d), "CPU-s per GB": float64(n) / 1e9}, "", err
		}},
		{name: reencryptCase, timed: true, fn: func(s *Server) (map[string]float64, string, error) {
			n, err := Bulk(s.TermBulkReencrypt, nil, w.TermConfig(), 1, d)
			return map[string]float64{"Gbit/s": gbit(n, d), "CPU-s per GB": float64(n) / 1e9}, "", err
		}},
	}
}

// idleRSS is the server's resident memory growth per idle connection. It runs first on
// a freshly started server, so memory freed by earlier cases cannot hide the cost.
func idleRSS(s *Server, addr string, hello []byte, cfg *tls.Config, o Options) (map[string]float64, string, error) {
	n := o.IdleConns
	fds := openFDs()
	before := RSSKB(s.Pids())
	closeAll, err := OpenIdle(addr, hello, cfg, n)
	if err != nil {
		return nil, "", err
	}
	time.Sleep(300 * time.Millisecond)
	after := RSSKB(s.Pids())
	name := "idle-passthrough"
	switch {
	case addr == s.TermBulkReencrypt:
		name = "idle-reencrypted"
	case cfg != nil:
		name = "idle-terminated"
	}
	s.saveProfiles(o.ProfileDir, name, "heap", "goroutine")
	closeAll()
	// This process holds the upstream side too: wait until the server has let go of
	// every connection, or the next case runs out of descriptors.
	for deadline := time.Now().Add(20 * time.Second); openFDs() > fds+16 && time.Now().Before(deadline); {
		runtime.GC() // the upstreams' io.Copy splices; Go pools its pipes until a collection
		time.Sleep(50 * time.Millisecond)
	}
	return map[string]float64{"kB": float64(after-before) / float64(n)}, "", nil
}

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

const (
	firstRequestCase = "first request after the handshake, client without TCP_NODELAY"
	reencryptCase    = "terminated bulk, 1 conn, re-encrypted to a TLS upstream"
	connRateCase     = "passthrough new connections"
	routeScaleCase   = "passthrough new connections by routes"
)

// routeScale compares tlsd's passthrough connection rate per CPU-s with 1 and with
// 10,001 routes on the listener.
func routeScale(w *World, hello []byte, o Options, add func(string, string, string, float64, string)) error {
	for _, extra := range []int{0, 10_000} {
		s, err := StartTLSD(w, o.TLSD, extra, o.ProfileDir != "", false)
		if err != nil {
			return err
		}
		profiled := s.profileCPU(o.ProfileDir, fmt.Sprintf("routes-%d", extra+1), 1, o.Duration)
		cpu0 := CPUSeconds(s.Pids())
		n, err := ConnRate(s.PT, hello, 8, o.Duration)
		cpu := CPUSeconds(s.Pids()) - cpu0
		profiled()
		s.Stop()
		if err != nil {
			return err
		}
		add(routeScaleCase, "conn/CPU-s", fmt.Sprintf("tlsd, %d routes", extra+1), safeDiv(float64(n), cpu), "")
	}
	return nil
}

func latencyPercentiles(addr string, hello []byte, d time.Duration) (p50, p99 float64, err error) {
	lat, err := Latency(addr, hello, 10, 2000, 1024, d)
	if err != nil {
		return 0, 0, err
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("no round trip completed")
	}
	slices.Sort(lat)
	us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	return us(0.5), us(0.99), nil
}

func gbit(n int64, d time.Duration) float64 { return float64(n) * 8 / 1e9 / d.Seconds() }

func safeDiv(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
