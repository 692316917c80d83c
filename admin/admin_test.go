package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel/server"
)

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr              string
		enabled, loopback bool
		err               bool
	}{
		{"off", false, false, false},
		{"127.0.0.1:9180", true, true, false},
		{"[::1]:9180", true, true, false},
		{"localhost:9180", true, true, false},
		{"0.0.0.0:9180", true, false, false},
		{":9180", false, false, true},
		{"9180", false, false, true},
	}
	for _, c := range cases {
		en, lo, err := CheckAddr(c.addr)
		if en != c.enabled || lo != c.loopback || (err != nil) != c.err {
			t.Errorf("CheckAddr(%q) = %v %v %v", c.addr, en, lo, err)
		}
	}
}

// TestAdminExposure: the admin API answers only to Host headers that name it (an IP
// address, localhost, or a configured name), so a DNS-rebinding page cannot read it, and
// serves profiles beyond loopback only when asked to.
func TestAdminExposure(t *testing.T) {
	t.Parallel()
	h := Handler(View{Page: func() Page { return Page{} }, Ready: func() error { return nil }, Status: func() any { return Status{} },
		Config: func() any { return nil }, Metrics: prometheus.NewRegistry()})
	req := func(h http.Handler, host, path string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	loopback := Guard(h, "127.0.0.1:9180", []string{"tlsd.internal"}, false)
	for _, c := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:9180", http.StatusOK},
		{"[::1]:9180", http.StatusOK},
		{"localhost:9180", http.StatusOK},
		{"LOCALHOST", http.StatusOK},
		{"tlsd.internal:9180", http.StatusOK},
		{"attacker.example:9180", http.StatusMisdirectedRequest}, // rebinding: the name resolves to 127.0.0.1
		{"localhost.attacker.example", http.StatusMisdirectedRequest},
	} {
		if got := req(loopback, c.host, "/healthz"); got != c.want {
			t.Errorf("Host %q: %d, want %d", c.host, got, c.want)
		}
	}
	if got := req(loopback, "127.0.0.1:9180", "/debug/pprof/cmdline"); got != http.StatusOK {
		t.Errorf("pprof on a loopback admin address: %d", got)
	}
	exposed := Guard(h, "0.0.0.0:9180", nil, false)
	if got := req(exposed, "192.0.2.7:9180", "/debug/pprof/cmdline"); got != http.StatusNotFound {
		t.Errorf("pprof on 0.0.0.0 without --admin-pprof: %d, want 404", got)
	}
	if got := req(exposed, "192.0.2.7:9180", "/status"); got != http.StatusOK {
		t.Errorf("/status on 0.0.0.0: %d", got)
	}
	asked := Guard(h, "0.0.0.0:9180", nil, true)
	if got := req(asked, "192.0.2.7:9180", "/debug/pprof/cmdline"); got != http.StatusOK {
		t.Errorf("pprof on 0.0.0.0 with --admin-pprof: %d", got)
	}
}

// TestStatusPageEscapes: names, diagnostics and errors that come from outside (an agent's
// certificate, a configuration file, a CA's answer) are shown as text, never markup, and
// the page may run no script whatever it holds.
func TestStatusPageEscapes(t *testing.T) {
	hostile := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	p := Page{Title: "tlsd edge", Reload: Attempt{OK: false, At: time.Now(), Error: hostile,
		Diagnostics: schema.Diagnostics{{File: "x.yaml", Line: 1, Column: 1, Severity: schema.SeverityError, Code: "unknown-field", Message: hostile}}},
		Endpoints: pageEndpoints([]EndpointStatus{{Name: "e", Domain: "e.test", TerminateAt: "edge", Upstream: hostile,
			Certificate: &CertificateStatus{State: "failed", Error: hostile, Issuer: hostile, NotAfter: time.Now().Add(time.Hour)}}}),
		Agents: []server.AgentStatus{{Name: hostile, Address: hostile, Since: time.Now()}}}
	rec := httptest.NewRecorder()
	ServePage(rec, httptest.NewRequest("GET", "/", nil), p)
	body := rec.Body.String()
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Errorf("the page carries markup from outside:\n%s", body)
	}
	if n := strings.Count(body, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 6 {
		t.Errorf("the hostile text is shown escaped %d times, want every place (6)", n)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q must forbid scripts", csp)
	}
}
