package daemon

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tlsd/tlsd/admin"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	d, err := New(Options{Listen: "127.0.0.1:0", StateDir: t.TempDir(), Logger: slogTo(io.Discard)})
	must(t, err)
	h := d.AdminHandler()
	if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first generation = %d", code)
	}
	d.Shutdown(t.Context())

	w := newWorld(t)
	h = w.d.AdminHandler()
	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	if code, body := get(t, h, "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine = %d %.80q", code, body)
	}
	// One good and one refused connection, then look at the numbers.
	tc, err := w.dialTLS(&tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()})
	must(t, err)
	roundTrip(tc, []byte("counted"))
	w.log.waitFor(t, "connection closed", "sni=edge.test") // the client saw the end before tlsd's account of it
	handshakeAndRead(w.env, &tls.Config{ServerName: "nope.test", InsecureSkipVerify: true})
	failedLine := w.log.waitFor(t, "connection failed", "nope.test")
	if !strings.Contains(failedLine, "reason_code=unknown_sni") || !strings.Contains(failedLine, "mode=none") ||
		!regexp.MustCompile(`duration_ms=[0-9]+(\.[0-9]+)? `).MatchString(failedLine) {
		t.Errorf("the failed connection's log line lacks mode=none, reason_code or a duration_ms number:\n%s", failedLine)
	}
	open, err := w.dialTLS(&tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots()})
	must(t, err)
	defer open.Close()
	echoOnce(t, open, "open")

	_, body := get(t, h, "/status")
	var st admin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	if st.Generation != 1 || !st.LastAttempt.OK || len(st.Endpoints) != 6 || st.StartedAt.IsZero() || st.UptimeSeconds <= 0 ||
		st.Unrouted != (admin.EndpointTotals{Connections: 1, Failed: 1}) {
		t.Errorf("status = %+v", st)
	}
	for _, e := range st.Endpoints {
		switch e.Name {
		case "edge":
			if e.ActiveConnections != 1 || e.Certificate == nil || !strings.HasPrefix(e.Certificate.Issuer, "tlsd local CA") || e.Certificate.Serial == "" ||
				e.Totals != (admin.EndpointTotals{Connections: 1}) {
				t.Errorf("edge status = %+v, cert %+v", e, e.Certificate)
			}
		case "zk":
			if e.Certificate != nil {
				t.Errorf("zero-knowledge endpoint reports a certificate: %+v", e.Certificate)
			}
		}
	}
	_, metrics := get(t, h, "/metrics")
	for _, want := range []string{
		`tlsd_connections_total{endpoint="edge",mode="edge",reason="",result="ok"} 1`,
		`tlsd_connections_total{endpoint="none",mode="none",reason="unknown_sni",result="failed"} 1`,
		`tlsd_handshake_duration_seconds_count{endpoint="edge",mode="edge"} 1`,
		`tlsd_connection_duration_seconds_count{endpoint="edge",mode="edge"} 1`,
		`tlsd_connection_duration_seconds_count{endpoint="none",mode="none"} 1`,
		`tlsd_connection_failures_total{endpoint="none",reason="unknown_sni"} 1`,
		`tlsd_handshakes_total{endpoint="edge",result="ok"}`,
		`tlsd_bytes_total{direction="in",endpoint="edge"}`,
		`tlsd_active_connections{endpoint="edge"} 1`,
		`tlsd_reloads_total{result="applied"} 1`,
		`tlsd_generation 1`,
		`tlsd_last_reload_success_timestamp_seconds`,
		`tlsd_certificate_expiry_timestamp_seconds{endpoint="edge",source="internal"}`,
		`go_goroutines `,
		`process_open_fds `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for name := range admin.MetricHelp {
		if name == "tlsd_acme_orders_total" || strings.HasPrefix(name, "tlsd_tunnel_") || strings.HasPrefix(name, "tlsd_agent_") ||
			name == "tlsd_upstream_tls_handshake_duration_seconds" || name == "tlsd_state_store_up" || name == "tlsd_endpoint_agent_up" {
			continue // no ACME issuer, tunnel, tls:// upstream or state store here: the ACME, split, upstream and fleet tests see those
		}
		if !strings.Contains(metrics, "# HELP "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	promtoolCheck(t, metrics)
	_, cfg := get(t, h, "/config")
	if !strings.Contains(cfg, `"name": "edge"`) || !strings.Contains(cfg, `"terminate_at": "agent"`) ||
		strings.Contains(cfg, `"TerminateAt"`) || strings.Contains(cfg, `"Pos"`) {
		t.Errorf("/config does not spell fields as the YAML does:\n%s", cfg)
	}
	key, err := os.ReadFile(w.path("agent.key"))
	must(t, err)
	if sum := sha256.Sum256(key); strings.Contains(cfg, hex.EncodeToString(sum[:])) {
		t.Error("/config publishes a hash of a private key's content")
	}
	if !strings.Contains(cfg, `"crt": "agent.crt"`) {
		t.Errorf("/config paths are not relative to the configuration root:\n%s", cfg)
	}
}

// promtoolCheck runs Prometheus's own linter over a scrape: names, units, help, types.
func promtoolCheck(t *testing.T, metrics string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is required (apt-get install prometheus; .ci/run installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
