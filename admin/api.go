// Package admin is tlsd's admin API over a read-only view of a daemon: /healthz,
// /readyz, /status (the status model, whose types are here), /config, /metrics, the
// status page at / (HTML, no script, everything escaped) and /debug/pprof/; and the
// exposure policy in front of them (Host names, profiling off loopback).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// View is what an admin API shows of a daemon; every function is called per request.
type View struct {
	Page    func() Page
	Ready   func() error // nil when ready; the error says why not
	Status  func() any   // /status
	Config  func() any   // /config
	Metrics prometheus.Gatherer
}

// Handler serves /healthz, /readyz, /status, /config, /metrics, the page at / and
// /debug/pprof/.
func Handler(v View) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { ServePage(w, r, v.Page()) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := v.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, v.Status()) })
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, v.Config()) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(v.Metrics, promhttp.HandlerOpts{}))
	handleProfiling(mux)
	return mux
}

// handleProfiling serves Go's profiles (CPU, heap, goroutines, ...) under /debug/pprof/,
// for `go tool pprof http://ADMIN/debug/pprof/profile`. The admin API is bound to
// loopback unless the operator chose otherwise, like the rest of what it reveals.
func handleProfiling(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Guard puts the exposure policy in front of an admin handler:
//   - a request must name the admin API in its Host header: an IP address, localhost, or
//     one of hosts (--admin-host). A DNS-rebinding page (a name of the attacker's resolving to
//     127.0.0.1) in an operator's browser would otherwise read /status and /config.
//   - /debug/pprof/ (CPU profiles, traces, the command line) is served on a loopback
//     admin address (addr), elsewhere only with pprof.
func Guard(h http.Handler, addr string, hosts []string, pprof bool) http.Handler {
	_, loopback, _ := CheckAddr(addr)
	profiling := loopback || pprof
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, hosts) {
			http.Error(w, "unknown Host header: the admin API answers to an IP address, localhost or an --admin-host name", http.StatusMisdirectedRequest)
			return
		}
		if !profiling && strings.HasPrefix(r.URL.Path, "/debug/pprof") {
			http.Error(w, "profiling is served on a loopback admin address; --admin-pprof serves it here too", http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hostAllowed(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true // no rebinding through an address literal
	}
	return strings.EqualFold(host, "localhost") || slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, host) })
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// CheckAddr validates --admin: "off", or host:port with an explicit host, so that
// the admin API is exposed beyond this machine only by an address that says so.
func CheckAddr(addr string) (enabled, loopback bool, err error) {
	if addr == "off" {
		return false, false, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, false, fmt.Errorf("--admin %q: want host:port or off", addr)
	}
	if host == "" {
		return false, false, fmt.Errorf("--admin %q binds every interface; write 127.0.0.1%s for this machine only, or 0.0.0.0%s to expose it", addr, addr, addr)
	}
	if host == "localhost" {
		return true, true, nil
	}
	ip, err := netip.ParseAddr(host)
	return true, err == nil && ip.IsLoopback(), nil
}

// Serve serves h on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
