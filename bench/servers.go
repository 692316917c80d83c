package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
)

// World is what every server under test shares: certificates and the upstreams.
type World struct {
	Dir               string
	Roots             *x509.CertPool
	CertFile, KeyFile string // ECDSA P-256 for term.test
	PEMFile           string // certificate and key concatenated (HAProxy)
	Sink              string // answers one byte to the first bytes it gets, then discards (passthrough)
	Discard           string // discards (terminated bulk)
	DiscardTLS        string // discards, over TLS as upstream.test (re-encrypted bulk)
	CAFile            string // the bench CA, for verifying DiscardTLS
	Echo              string // echoes (terminated handshakes)
	EchoPT            string // answers one byte to the first bytes it gets, then echoes (passthrough latency)
	listeners         []net.Listener
}

// NewWorld makes the certificates and starts the upstreams, on loopback.
func NewWorld(dir string) (*World, error) {
	w := &World{Dir: dir}
	ca, err := testpki.NewCA("bench CA", time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(testpki.Options{CommonName: "term.test", DNSNames: []string{"term.test"}})
	if err != nil {
		return nil, err
	}
	w.CertFile, w.KeyFile, w.PEMFile = filepath.Join(dir, "term.crt"), filepath.Join(dir, "term.key"), filepath.Join(dir, "term.pem")
	if err := leaf.WriteFiles(w.CertFile, w.KeyFile); err != nil {
		return nil, err
	}
	if err := os.WriteFile(w.PEMFile, append(leaf.CertPEM(), leaf.KeyPEM()...), 0o600); err != nil {
		return nil, err
	}
	w.Roots = x509.NewCertPool()
	w.Roots.AddCert(ca.Cert)
	w.CAFile = filepath.Join(dir, "ca.crt")
	if err := ca.WriteFiles(w.CAFile, ""); err != nil {
		return nil, err
	}
	if err := w.serveTLSDiscard(ca); err != nil {
		return nil, err
	}
	if w.Sink, err = w.serve(func(c net.Conn) {
		buf := make([]byte, 256<<10)
		if _, err := c.Read(buf); err == nil {
			c.Write([]byte{22})
			discard(c, buf)
		}
	}); err != nil {
		return nil, err
	}
	if w.Discard, err = w.serve(func(c net.Conn) { discard(c, make([]byte, 256<<10)) }); err != nil {
		return nil, err
	}
	if w.Echo, err = w.serve(func(c net.Conn) { io.Copy(c, c) }); err != nil {
		return nil, err
	}
	w.EchoPT, err = w.serve(func(c net.Conn) {
		if _, err := c.Read(make([]byte, 64<<10)); err == nil {
			c.Write([]byte{22})
			io.Copy(c, c)
		}
	})
	return w, err
}

// serveTLSDiscard starts DiscardTLS: a TLS server for upstream.test that discards.
func (w *World) serveTLSDiscard(ca *testpki.Pair) error {
	leaf, err := ca.Issue(testpki.Options{CommonName: "upstream.test", DNSNames: []string{"upstream.test"}})
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	w.DiscardTLS, err = w.serve(func(c net.Conn) { discard(tls.Server(c, cfg), make([]byte, 256<<10)) })
	return err
}

// discard reads c to its end in reads as large as the load client's writes (io.Discard's
// own ReadFrom would read 8 KiB at a time and make the sink the bottleneck).
func discard(c net.Conn, buf []byte) {
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func (w *World) serve(h func(net.Conn)) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	w.listeners = append(w.listeners, ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); h(c) }()
		}
	}()
	return ln.Addr().String(), nil
}

// Close stops the upstreams.
func (w *World) Close() {
	for _, ln := range w.listeners {
		ln.Close()
	}
}

// Server is one proxy under test, pinned to CPU 0, with four listeners: passthrough
// by SNI (pt.test -> Sink), termination (term.test -> Echo), termination for bulk
// (term.test -> Discard) and termination re-encrypted for bulk (-> DiscardTLS, verified).
type Server struct {
	Name                                  string
	PT, Term, TermBulk, TermBulkReencrypt string
	Admin                                 string // tlsd's admin API when profiling, else ""
	// Cases, if set, are the only cases this server runs (the split deployment has no
	// re-encrypting endpoint and its idle memory is two processes').
	Cases      *regexp.Regexp
	cmd        *exec.Cmd
	pid        int
	companions []*exec.Cmd // more processes of the same server (the split deployment's agent)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:1"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newServer(name string) *Server {
	return &Server{Name: name, PT: freeAddr(), Term: freeAddr(), TermBulk: freeAddr(), TermBulkReencrypt: freeAddr()}
}

// Pids are the server's processes.
func (s *Server) Pids() []int {
	pids := processTree(s.pid)
	for _, c := range s.companions {
		pids = append(pids, processTree(c.Process.Pid)...)
	}
	return pids
}

// Stop ends the server.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	// nginx's workers outlive a killed master (and would load the next cases): end the
	// whole process tree.
	tree := s.Pids()
	s.cmd.Process.Kill()
	for _, pid := range tree[1:] {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.cmd.Wait()
	for _, c := range s.companions {
		c.Wait()
	}
}

func (s *Server) start(dir string, args ...string) error {
	cmd, err := pinned(filepath.Join(dir, s.Name+".log"), args)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range []string{s.PT, s.Term, s.TermBulk} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				data, _ := os.ReadFile(filepath.Join(dir, s.Name+".log"))
				return fmt.Errorf("%s never listened on %s: %s", s.Name, a, data)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// pinned starts a process on CPU 0 with one Go P, its output in the file logPath.
func pinned(logPath string, args []string) (*exec.Cmd, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command("taskset", append([]string{"-c", "0"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	return cmd, cmd.Start()
}

// LimitedTLSD names the tlsd whose endpoints all have limits and timeouts (none of
// them reached): what they cost, against plain tlsd.
const LimitedTLSD = "tlsd+limits"

const limitsYAML = "limits: {max_connections: 1000000, max_connections_per_ip: 1000000, rate_per_ip: \"1000000/s\"}\n" +
	"timeouts: {idle: 1h, max_lifetime: 24h}\n"

// StartTLSD runs the tlsd binary with extraRoutes more passthrough endpoints (to
// measure route-table scale); limited gives every endpoint limits and timeouts.
func StartTLSD(w *World, bin string, extraRoutes int, admin, limited bool) (*Server, error) {
	s := newServer("tlsd")
	endpointExtra := ""
	if limited {
		s.Name, endpointExtra = LimitedTLSD, limitsYAML
	}
	adminAddr := "off"
	if admin {
		s.Admin = freeAddr()
		adminAddr = s.Admin
	}
	dir := filepath.Join(w.Dir, fmt.Sprintf("tlsd-%d-%t", extraRoutes, limited))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var b strings.Builder
	ep := func(name, domain, listen, upstream, extra string) {
		fmt.Fprintf(&b, "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: %s\ndomain: %s\nlisten: %q\nupstream: %s\n%s%s", name, domain, listen, upstream, extra, endpointExtra)
	}
	term := fmt.Sprintf("terminate_at: edge\ntls:\n  certificate: {crt: %s, key: %s}\n", w.CertFile, w.KeyFile)
	ep("pt", "pt.test", s.PT, w.Sink, "")
	ep("echo", "echo.test", s.PT, w.EchoPT, "")
	ep("term", "term.test", s.Term, w.Echo, term)
	ep("term-bulk", "term.test", s.TermBulk, w.Discard, term)
	ep("term-bulk-tls", "term.test", s.TermBulkReencrypt, "tls://"+w.DiscardTLS,
		term+fmt.Sprintf("upstream_tls: {server_name: upstream.test, certificate_authorities: [%s]}\n", w.CAFile))
	for i := range extraRoutes {
		ep(fmt.Sprintf("r%d", i), fmt.Sprintf("r%d.routes.test", i), s.PT, w.Sink, "")
	}
	if err := os.WriteFile(filepath.Join(dir, "endpoints.yaml"), []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return s, s.start(w.Dir, bin, "run", "--admin", adminAddr, "--log-level", "warn", "--state-dir", filepath.Join(dir, "state"), dir)
}

// StartHAProxy runs HAProxy in TCP mode, one thread, splicing passthrough.
func StartHAProxy(w *World) (*Server, error) {
	s := newServer("haproxy")
	cfg := fmt.Sprintf(`global
    nbthread 1
    maxconn 6000
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-curves X25519:P-256
defaults
    mode tcp
    maxconn 6000
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend pt
    bind %s
    option splice-auto
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend sink if { req.ssl_sni -i pt.test }
    use_backend echopt if { req.ssl_sni -i echo.test }
frontend term
    bind %s ssl crt %s
    default_backend echo
frontend termbulk
    bind %s ssl crt %s
    default_backend discard
frontend termbulktls
    bind %s ssl crt %s
    default_backend discardtls
backend sink
    option splice-auto
    server s1 %s
backend echopt
    server s1 %s
backend echo
    server s1 %s
backend discard
    server s1 %s
backend discardtls
    server s1 %s ssl verify required ca-file %s sni str(upstream.test) verifyhost upstream.test
`, s.PT, s.Term, w.PEMFile, s.TermBulk, w.PEMFile, s.TermBulkReencrypt, w.PEMFile, w.Sink, w.EchoPT, w.Echo, w.Discard, w.DiscardTLS, w.CAFile)
	path := filepath.Join(w.Dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return s, s.start(w.Dir, "haproxy", "-db", "-f", path)
}

// StartNginx runs nginx's stream module, one worker: ssl_preread passthrough and
// termination.
func StartNginx(w *World) (*Server, error) {
	s := newServer("nginx")
	cfg := fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 19000;
pid %s/nginx.pid;
error_log %s/nginx-error.log error;
events { worker_connections 9000; }
stream {
    map $ssl_preread_server_name $be { pt.test %s; echo.test %s; default 127.0.0.1:1; }
    server { listen %s; ssl_preread on; proxy_half_close on; proxy_pass $be; }
    server { listen %s ssl; ssl_certificate %s; ssl_certificate_key %s;
             ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1; proxy_pass %s; }
    server { listen %s ssl; ssl_certificate %s; ssl_certificate_key %s;
             ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1; proxy_pass %s; }
    server { listen %s ssl; ssl_certificate %s; ssl_certificate_key %s;
             ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1; proxy_pass %s;
             proxy_ssl on; proxy_ssl_verify on; proxy_ssl_trusted_certificate %s;
             proxy_ssl_name upstream.test; proxy_ssl_server_name on; }
}
`, w.Dir, w.Dir, w.Sink, w.EchoPT, s.PT, s.Term, w.CertFile, w.KeyFile, w.Echo, s.TermBulk, w.CertFile, w.KeyFile, w.Discard,
		s.TermBulkReencrypt, w.CertFile, w.KeyFile, w.DiscardTLS, w.CAFile)
	path := filepath.Join(w.Dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return s, s.start(w.Dir, "nginx", "-c", path, "-g", "daemon off;")
}

// TermConfig is the client configuration for the termination listeners.
func (w *World) TermConfig() *tls.Config { return ClientConfig("term.test", w.Roots) }

// profileCPU starts a CPU profile of tlsd lasting d and returns a function that waits for
// it and saves it in dir; it does nothing unless the server has an admin API and dir is set.
func (s *Server) profileCPU(dir, caseName string, run int, d time.Duration) (wait func()) {
	if dir == "" || s.Admin == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(1, int(d.Round(time.Second)/time.Second))
		s.saveProfile(dir, fmt.Sprintf("%s-%s-run%d", s.Name, caseName, run), fmt.Sprintf("profile?seconds=%d", secs))
	}()
	return func() { <-done }
}

// saveProfiles saves tlsd's current profiles of the given kinds (heap, goroutine, ...).
func (s *Server) saveProfiles(dir, name string, kinds ...string) {
	if dir == "" || s.Admin == "" {
		return
	}
	for _, k := range kinds {
		s.saveProfile(dir, name+"-"+k, k)
	}
	s.save(dir, name+"-metrics.txt", "/metrics")
}

func (s *Server) saveProfile(dir, name, query string) {
	s.save(dir, name+".pprof", "/debug/pprof/"+query)
}

func (s *Server) save(dir, file, path string) {
	resp, err := http.Get("http://" + s.Admin + path)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(dir, strings.NewReplacer(" ", "-", ",", "", "/", "-").Replace(file)))
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
