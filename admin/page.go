package admin

import (
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/tlsd/tlsd/schema"
	"github.com/tlsd/tlsd/tunnel/client"
	"github.com/tlsd/tlsd/tunnel/server"
	"github.com/tlsd/tlsd/version"
)

// The status page (/ on the admin address): what an operator opens first, as HAProxy's
// stats page. One HTML document, no external assets and no script (its Content-Security-
// Policy allows none), refreshing itself; html/template escapes every value, and names,
// SNI, certificate fields and error texts can all come from outside.

//go:embed page.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return ago(time.Since(t)) },
	"clock": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
}).Parse(pageSource))

// PageRefresh is how often the page reloads itself.
const PageRefresh = 10 * time.Second

// Page is what the status page shows.
type Page struct {
	Title      string
	Build      version.Info
	Refresh    int
	Uptime     string
	Generation uint64
	AppliedAt  time.Time
	Config     *ConfigStatus // the configuration served: revision and digest
	Reload     Attempt
	Endpoints  []pageEndpoint
	Unrouted   *EndpointTotals
	Agents     []server.AgentStatus  // an edge's agent sessions
	Sessions   []client.TunnelStatus // an agent's sessions to its edges
	NoAgent    []string              // endpoints whose agent has no live session
	Tunnel     *CertificateStatus    // this process's own tunnel certificate
	StateStore *StateStoreStatus
	HTTPListen string
}

// pageEndpoint is an endpoint's row.
type pageEndpoint struct {
	EndpointStatus
	Upstreams string
	Cert      pageCert
}

// pageCert is a certificate's cell: days left, coloured by how close its end is.
type pageCert struct {
	Shown bool
	Class string // ok, warn (< 14 days), crit (< 3 days, expired or none while failing)
	Text  string
	Error string
}

func certCell(c *CertificateStatus) pageCert {
	if c == nil {
		return pageCert{}
	}
	pc := pageCert{Shown: true, Class: "ok", Error: c.Error}
	left := time.Until(c.NotAfter)
	warn, crit := schema.ExpiryWarning, 3*24*time.Hour
	if c.Source == SourceInternal {
		warn, crit = 36*time.Hour, 12*time.Hour // renewed with days to spare: closer means it is not
	}
	switch {
	case c.NotAfter.IsZero():
		pc.Text = "none yet (" + c.State + ")"
		pc.Class = map[bool]string{true: "crit", false: "warn"}[c.State == "failed"]
		return pc
	case left <= 0:
		pc.Class, pc.Text = "crit", "EXPIRED "+clockText(c.NotAfter)
		return pc
	case left < crit:
		pc.Class = "crit"
	case left < warn:
		pc.Class = "warn"
	}
	pc.Text = fmt.Sprintf("%s left (%s)", days(left), c.Issuer)
	if c.State != "" {
		pc.Text += ", " + c.State
	}
	if c.Challenge != "" {
		pc.Text += " by " + c.Challenge
	}
	if c.HeldBy != "" {
		pc.Text += ", at agent " + c.HeldBy
	}
	if c.State == "failed" && !c.NextRetry.IsZero() {
		pc.Class = "crit"
		pc.Error += "; next try " + clockText(c.NextRetry)
	}
	return pc
}

func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%.0f h", math.Floor(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func clockText(t time.Time) string { return t.Local().Format("2006-01-02 15:04") }

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func pageEndpoints(eps []EndpointStatus) []pageEndpoint {
	out := make([]pageEndpoint, 0, len(eps))
	for _, e := range eps {
		pe := pageEndpoint{EndpointStatus: e, Upstreams: e.Upstream, Cert: certCell(e.Certificate)}
		if len(e.Upstreams) > 1 || pe.Upstreams == "" {
			var list []string
			for _, u := range e.Upstreams {
				list = append(list, u.Address+map[bool]string{true: "", false: " (down)"}[u.Up])
			}
			pe.Upstreams = strings.Join(list, ", ")
		}
		out = append(out, pe)
	}
	return out
}

// DaemonPage is the page of tlsd run (title "tlsd run") and tlsd edge.
func DaemonPage(st Status, title string) Page {
	p := Page{Title: title, Build: st.Build, Uptime: ago(time.Since(st.StartedAt)), Generation: st.Generation, Config: st.Config,
		AppliedAt: st.AppliedAt, Reload: st.LastAttempt, Endpoints: pageEndpoints(st.Endpoints), Unrouted: &st.Unrouted,
		Agents: st.Agents, StateStore: st.StateStore, HTTPListen: st.HTTPListen, Tunnel: st.Tunnel}
	for _, e := range st.Endpoints {
		if e.AgentLive != nil && !*e.AgentLive {
			p.NoAgent = append(p.NoAgent, e.Name+" (agent "+e.Agent+")")
		}
	}
	return p
}

// AgentPage is the page of tlsd agent, up since started.
func AgentPage(st AgentStatus, started time.Time) Page {
	return Page{Title: "tlsd agent " + st.Agent, Build: st.Build, Uptime: ago(time.Since(started)), Generation: st.Generation, Config: st.Config,
		AppliedAt: st.AppliedAt, Reload: st.LastAttempt, Endpoints: pageEndpoints(st.Endpoints), Sessions: st.Edges, Tunnel: st.TunnelCertificate}
}

// ServePage writes p as HTML that can run no script and load nothing else.
func ServePage(w http.ResponseWriter, r *http.Request, p Page) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	p.Refresh = int(PageRefresh.Seconds())
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if err := pageTemplate.Execute(w, p); err != nil {
		fmt.Fprintf(w, "<p>page error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}
