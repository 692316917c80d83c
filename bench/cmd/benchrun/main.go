// Command benchrun runs tlsd beside HAProxy and nginx on the same load and prints the
// table (make bench). Run it pinned to the CPU the servers do not use:
//
//	taskset -c 1 benchrun -peers
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/bench"
)

func main() {
	tlsd := flag.String("tlsd", "bin/tlsd", "the tlsd binary to measure")
	runs := flag.Int("runs", 3, "repetitions of every case, interleaved across servers")
	dur := flag.Duration("duration", 3*time.Second, "length of each timed run")
	idle := flag.Int("idle", 4000, "connections held open for the memory cases")
	peers := flag.Bool("peers", true, "also measure HAProxy and nginx (installed with apt-get if missing)")
	out := flag.String("out", "", "also write the report to this file (default bench/results/DATE.md with -peers)")
	only := flag.String("only", "", "run only the cases whose name matches this regular expression")
	profile := flag.String("profile", "", "save tlsd's CPU profile (the split deployment's: its edge's) of every timed case, named by server and case, and heap and goroutine profiles of the idle ones, in this directory")
	flag.Parse()
	var onlyRE *regexp.Regexp
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			log.Fatalf("-only: %v", err)
		}
		onlyRE = re
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	raiseFileLimit(4**idle + 1024)
	if *peers {
		if err := ensurePeers(); err != nil {
			log.Fatal(err)
		}
		if *out == "" {
			*out = filepath.Join("bench", "results", time.Now().Format("2006-01-02")+".md")
		}
	}
	dir, err := os.MkdirTemp("", "tlsd-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	results, err := bench.Run(bench.Options{TLSD: *tlsd, Dir: dir, Runs: *runs, Duration: *dur, IdleConns: *idle, Peers: *peers, Log: os.Stderr, Only: onlyRE, ProfileDir: *profile})
	if err != nil {
		log.Fatal(err)
	}
	var report bytes.Buffer
	fmt.Fprintf(&report, "# tlsd benchmark, %s\n\n%s\n", time.Now().Format("2006-01-02"), machine(*peers))
	fmt.Fprintf(&report, "Command: `make bench` (%d runs of %s per case, interleaved; median (min–max); servers pinned to CPU 0, one thread each; load client on CPU 1; %d idle connections; took %s)\n\n",
		*runs, *dur, *idle, time.Since(start).Round(time.Second))
	bench.WriteTable(&report, results)
	os.Stdout.Write(report.Bytes())
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*out, report.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintln(os.Stderr, "wrote", *out)
	}
}

// raiseFileLimit makes room for the idle cases: this process holds the client side and
// the upstream side of every idle connection, and the servers it starts inherit the
// limit. Raising the hard limit needs root; without it the current limit stays.
func raiseFileLimit(want int) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur >= uint64(want) {
		return
	}
	lim.Cur = max(lim.Cur, uint64(want))
	lim.Max = max(lim.Max, lim.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintf(os.Stderr, "cannot raise the open-file limit to %d (%v); the idle cases may run out\n", want, err)
	}
}

func ensurePeers() error {
	_, errH := exec.LookPath("haproxy")
	_, errN := exec.LookPath("nginx")
	_, errM := os.Stat("/usr/lib/nginx/modules/ngx_stream_module.so")
	if errH == nil && errN == nil && errM == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "installing haproxy, nginx and its stream module with apt-get")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "haproxy", "nginx", "libnginx-mod-stream"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w (install haproxy, nginx and libnginx-mod-stream, or run with -peers=false)", args[0], err)
		}
	}
	return nil
}

// machine describes where the figures come from.
func machine(peers bool) string {
	var b strings.Builder
	cpu, n := "unknown CPU", 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				n++
			}
		}
	}
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s/%s\n- Go: %s (tlsd's TLS: crypto/tls)\n", n, cpu, runtime.GOOS, runtime.GOARCH, runtime.Version())
	if peers {
		fmt.Fprintf(&b, "- HAProxy: %s\n- nginx: %s\n", firstLine("haproxy", "-vv"), firstLine("nginx", "-V"))
	}
	return b.String()
}

func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "version") || strings.Contains(l, "OpenSSL") {
			keep = append(keep, strings.TrimSpace(l))
		}
		if len(keep) == 2 {
			break
		}
	}
	return strings.Join(keep, "; ")
}
