package schema

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const endpointTemplate = `apiVersion: tlsd/v1
kind: Endpoint
name: %s
domain: %s.example.com
upstream: 127.0.0.1:9000
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func endpointYAML(name string) string {
	return strings.ReplaceAll(endpointTemplate, "%s", name)
}

// TestConfigMapLayout reproduces a Kubernetes ConfigMap volume: files are symlinks to
// ..data/NAME, ..data is a symlink to a timestamped directory. The visible links are read
// and the dot-names are not read twice.
func TestConfigMapLayout(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_11_27_10_00_00.123", "billing.yaml"), endpointYAML("billing"))
	writeFile(t, filepath.Join(dir, "..2026_11_27_10_00_00.123", "shop.yaml"), endpointYAML("shop"))
	must(t, os.Symlink("..2026_11_27_10_00_00.123", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/billing.yaml", filepath.Join(dir, "billing.yaml")))
	must(t, os.Symlink("..data/shop.yaml", filepath.Join(dir, "shop.yaml")))
	// A directory symlink loop must not hang the walk.
	must(t, os.Symlink(".", filepath.Join(dir, "loop")))

	res, err := Load(Options{}, dir)
	must(t, err)
	if len(res.Diagnostics) != 0 {
		t.Fatalf("diagnostics: %s", diagLines(res.Diagnostics))
	}
	var names []string
	for _, ep := range res.Config.Endpoints {
		names = append(names, ep.Name)
	}
	if got := strings.Join(names, ","); got != "billing,shop" {
		t.Errorf("endpoints = %s, want billing,shop (each once)", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadPathErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(Options{}, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: err = %v, want not-exist", err)
	}
	writeFile(t, filepath.Join(dir, "README.md"), "no yaml here")
	if _, err := Load(Options{}, dir); err == nil || !strings.Contains(err.Error(), "no *.yaml") {
		t.Errorf("directory without YAML: err = %v", err)
	}
	// An explicit file is read whatever its extension.
	writeFile(t, filepath.Join(dir, "endpoint.conf"), endpointYAML("conf"))
	res, err := Load(Options{}, filepath.Join(dir, "endpoint.conf"))
	must(t, err)
	if res.Config == nil || len(res.Config.Endpoints) != 1 {
		t.Errorf("explicit file: %+v", res)
	}
}

func TestUnreadableConfigFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.yaml")
	writeFile(t, p, endpointYAML("x"))
	must(t, os.Chmod(p, 0))
	res, err := Load(Options{}, dir)
	must(t, err)
	if len(res.Diagnostics) != 1 || res.Diagnostics[0].Code != "file-unreadable" {
		t.Errorf("diagnostics = %s", diagLines(res.Diagnostics))
	}
}

// TestSkipFiles: with SkipFiles no referenced file is opened, so CI can validate a repo
// whose certificates and keys live elsewhere; everything else is still checked.
func TestSkipFiles(t *testing.T) {
	prepareKeyModes(t)
	for _, dir := range []string{"file-missing", "invalid-pem", "key-mismatch", "certificate-expired", "not-a-ca", "ca-roots"} {
		res, err := Load(Options{SkipFiles: true, Now: fixedNow}, filepath.Join("testdata", "invalid", dir))
		must(t, err)
		if len(res.Diagnostics) != 0 {
			t.Errorf("%s with SkipFiles: %s", dir, diagLines(res.Diagnostics))
		}
	}
	res, err := Load(Options{SkipFiles: true}, filepath.Join("testdata", "invalid", "certificate-and-issuer"))
	must(t, err)
	if !res.Diagnostics.HasErrors() {
		t.Error("SkipFiles must still report non-file errors")
	}
}

// TestEveryCodeHasACase keeps "one golden case per check" true as checks are added.
func TestEveryCodeHasACase(t *testing.T) {
	var all strings.Builder
	for _, dir := range caseDirs(t, "invalid") {
		data, err := os.ReadFile(filepath.Join(dir, "want.txt"))
		must(t, err)
		all.Write(data)
	}
	exempt := map[string]string{
		"schema":          "fallback for schema rules without a tailored message; none is reachable today",
		"invalid-key":     "covered by TestInvalidKey",
		"file-unreadable": "",
	}
	for _, c := range Codes {
		if why, ok := exempt[c.Name]; ok && why != "" {
			continue
		}
		if !strings.Contains(all.String(), "["+c.Name+"]") {
			t.Errorf("code %q has no case in testdata/invalid", c.Name)
		}
	}
}

func TestInvalidKey(t *testing.T) {
	res, err := LoadData(Options{}, "x.yaml", []byte("apiVersion: tlsd/v1\n[a, b]: c\n"))
	must(t, err)
	for _, d := range res.Diagnostics {
		if d.Code == "invalid-key" && d.Line == 2 {
			return
		}
	}
	t.Errorf("no invalid-key at line 2 in:\n%s", diagLines(res.Diagnostics))
}

// TestPatternsAgreeWithExplanations: the schema's patterns decide what editors accept;
// the Go explanations must call the same strings wrong, or users get "it does not have
// the expected form" instead of a reason.
func TestPatternsAgreeWithExplanations(t *testing.T) {
	v, err := compiled()
	must(t, err)
	defs := v.tree["definitions"].(map[string]any)
	props := defs["endpoint"].(map[string]any)["properties"].(map[string]any)
	pattern := func(field string) *regexp.Regexp {
		node := v.resolve(props[field].(map[string]any))
		return regexp.MustCompile(node["pattern"].(string))
	}
	cases := map[string]struct {
		check  func(string) string
		values []string
	}{
		"domain": {domainProblem, []string{"a.example.com", "*.example.com", "localhost", "*.*.example.com", "a..b", "-a.com",
			"a-.com", "a_b.com", "x.com.", "", "*", "*.", ".a.com", "bücher.de", "xn--bcher-kva.de", "A.Example.COM",
			strings.Repeat("a", 64) + ".com", "a.*.com"}},
		"listen": {listenProblem, []string{":443", "127.0.0.1:8443", "[::1]:443", "localhost:80", "443", ":", "[zz]:443",
			"a:b", "1.2.3.4:123456", "::1:443"}},
		"upstream": {upstreamProblem, []string{"127.0.0.1:9000", "unix:/run/a.sock", "unix:", "localhost", ":9000",
			"[::1]:80", "host:port", "a:1:2", "unix:rel/x.sock", "[x]:1"}},
		"name": {NameProblem, []string{"billing", "a", "a-b", "-a", "a-", "A", "a_b", "", strings.Repeat("a", 64), "a.b"}},
	}
	for field, c := range cases {
		re := pattern(field)
		for _, s := range c.values {
			// Only the direction "pattern rejects => Go explains" matters for messages;
			// Go may reject more (ports above 65535, IP addresses), which checkValues reports.
			if !re.MatchString(s) && c.check(s) == "" {
				t.Errorf("%s %q: schema pattern rejects it but Go gives no reason", field, s)
			}
		}
	}
}

// TestSchemaAgreesWithModeChecks: the schema's terminate_at rules (for editors) and the
// Go checks (for messages) must accept and reject the same documents.
func TestSchemaAgreesWithModeChecks(t *testing.T) {
	v, err := compiled()
	must(t, err)
	modeCodes := []string{"[field-not-allowed]", "[certificate-required]", "[certificate-and-issuer]"}
	for _, kind := range []string{"valid", "invalid"} {
		for _, dir := range caseDirs(t, kind) {
			want, _ := os.ReadFile(filepath.Join(dir, "want.txt"))
			goRejects := false
			for _, c := range modeCodes {
				goRejects = goRejects || strings.Contains(string(want), c)
			}
			schemaRejects := false
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			for _, f := range files {
				data, _ := os.ReadFile(f)
				docs, _ := parseDocuments(f, data)
				for _, d := range docs {
					err := v.schema.Validate(d.instance)
					var ve *jsonschema.ValidationError
					if errors.As(err, &ve) {
						for _, l := range leaves(ve, nil) {
							schemaRejects = schemaRejects || strings.Contains(l.SchemaURL, conditionalRules)
						}
					}
				}
			}
			if goRejects != schemaRejects {
				t.Errorf("%s: Go mode checks reject = %v, schema conditional rules reject = %v", dir, goRejects, schemaRejects)
			}
		}
	}
}

// TestRoles: each side of a split deployment checks only the files it reads, so the edge
// runs from a checkout where the agents' keys do not exist.
func TestRoles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "e.yaml"), `apiVersion: tlsd/v1
kind: Endpoint
name: at-agent
domain: a.example.com
upstream: 127.0.0.1:9000
terminate_at: agent
agent: api-agent
tls:
  certificate: {crt: absent.crt, key: absent.key}
---
apiVersion: tlsd/v1
kind: Endpoint
name: edge-to-tls
domain: b.example.com
upstream: tls://b.internal:8443
terminate_at: edge
agent: api-agent
tls: {issuer: internal}
upstream_tls: {certificate_authorities: [absent-ca.pem]}
`)
	codes := func(o Options) int {
		res, err := Load(o, dir)
		must(t, err)
		n, _ := res.Diagnostics.Count()
		return n
	}
	for _, c := range []struct {
		o    Options
		errs int
	}{
		{Options{}, 3},
		{Options{Role: RoleAll}, 3},
		{Options{Role: RoleEdge}, 0}, // the agent dials the tls:// upstream: its CA is not the edge's
		{Options{Role: RoleAgent}, 3},
		{Options{Role: RoleAgent, Agent: "api-agent"}, 3},
		{Options{Role: RoleAgent, Agent: "other-agent"}, 0},
	} {
		if got := codes(c.o); got != c.errs {
			t.Errorf("role %q agent %q: %d errors, want %d", c.o.Role, c.o.Agent, got, c.errs)
		}
	}
}

// TestExclude: files and directories matching an exclude pattern are not read: a name
// alone matches anywhere, a pattern with a slash the path below the root.
func TestExclude(t *testing.T) {
	dir := t.TempDir()
	ep := func(name string) string {
		return "apiVersion: tlsd/v1\nkind: Endpoint\nname: " + name + "\ndomain: " + name + ".example.com\nupstream: 127.0.0.1:9000\n"
	}
	files := map[string]string{
		"a.yaml":                 ep("a"),
		"docker-compose.yml":     "services: {web: {image: nginx}}\n",
		"sub/docker-compose.yml": "services: {}\n",
		"ci/pipeline.yaml":       "stages: [test]\n",
		"team/ci/endpoint.yaml":  ep("kept"),
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if res, _ := Load(Options{}, dir); !res.Diagnostics.HasErrors() {
		t.Fatal("without --exclude the foreign YAML should be errors: this test cannot see exclusion")
	}
	res, err := Load(Options{Exclude: []string{"docker-compose.yml", "ci/*"}}, dir)
	if err != nil || res.Diagnostics.HasErrors() {
		t.Fatalf("with excludes: %v %v", err, res.Diagnostics)
	}
	if res.Files != 2 || res.Endpoints != 2 {
		t.Errorf("read %d files, %d endpoints; want a.yaml and team/ci/endpoint.yaml", res.Files, res.Endpoints)
	}
	if err := ValidExclude("[unclosed"); err == nil {
		t.Error("a malformed pattern is accepted")
	}
}
