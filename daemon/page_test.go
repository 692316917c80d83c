package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/schema"
)

// TestStatusPageInBrowser opens the status page of a running tlsd in headless Chromium:
// a screenshot goes to the test's artifact directory (go test -artifacts keeps it), and
// the DOM Chromium built is checked for the endpoints, their certificates coloured by
// how close their end is, the totals, and a failed reload with its diagnostic.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	soon, err := e.agentCA.Issue(testpki.Options{CommonName: "soon.test", DNSNames: []string{"soon.test"}, NotAfter: time.Now().Add(50 * time.Hour)})
	must(t, err)
	must(t, soon.WriteFiles(e.path("soon.crt"), e.path("soon.key"), e.agentCA))
	e.start(yamlEndpoint("web", "web.test", up.addr(), "edge", "  issuer: internal\n")+
		yamlEndpoint("soon", "soon.test", up.addr(), "edge", "  certificate: {crt: soon.crt, key: soon.key}\n")+
		yamlEndpoint("pass", "pass.test", up.addr(), "", ""), func(o *Options) {})
	conn, err := e.dialTLS(&tls.Config{ServerName: "web.test", RootCAs: e.internalRoots()})
	must(t, err)
	echoOnce(t, conn, "counted")
	conn.Close()
	e.log.waitFor(t, "connection closed", "sni=web.test")
	res, err := schema.LoadData(schema.Options{}, e.path("broken.yaml"), []byte("apiVersion: tlsd/v1\nkind: Endpoint\nname: web\ndomian: web.test\n"))
	must(t, err)
	e.d.RecordFailedLoad(res.Diagnostics, nil)
	srv := httptest.NewServer(e.d.AdminHandler())
	defer srv.Close()

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1400,900", srv.URL+"/")
	if png, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10_000 {
		t.Fatalf("no screenshot of the page (%d bytes, %v)", len(png), err)
	}
	t.Logf("screenshot: %s", shot)
	dom := runChromium(t, chromium, "--dump-dom", srv.URL+"/")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<h1 id="title">tlsd run</h1>`),
		regexp.MustCompile(`<td>web</td>\s*<td>edge</td><td>web.test</td>`),
		regexp.MustCompile(`<td class="num">1</td><td class="num">0</td>`), // web: one connection, none failed
		regexp.MustCompile(`class="cert ok">6 days left \(tlsd local CA`),
		regexp.MustCompile(`class="cert crit">2 days left \(agent CA\)`),
		regexp.MustCompile(`held by the upstream`),
		regexp.MustCompile(`id="reload" class="crit">FAILED`),
		regexp.MustCompile(`broken.yaml:4:1</code> error: unknown field "domian"`),
	} {
		if !want.MatchString(dom) {
			t.Errorf("the page in Chromium lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is required for the status page test (apt-get install chromium; .ci/run installs it)")
	return ""
}

// runChromium runs headless Chromium once and returns what it printed.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile, "--hide-scrollbars"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}
