package doctest

import (
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/admin"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/schema"
)

var updateDemoCerts = flag.Bool("update-demo-certs", false, "regenerate the demo certificates of the examples")

// TestGenerateDemoCerts writes the committed demo-only certificates.
func TestGenerateDemoCerts(t *testing.T) {
	if !*updateDemoCerts {
		t.Skip("run with -update-demo-certs to regenerate the examples' demo certificates")
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	until := from.AddDate(20, 0, 0)
	ca, err := testpki.NewCA("tlsd quickstart demo CA (DEMO ONLY)", from, until)
	must(t, err)
	must(t, ca.WriteFiles(ex("quickstart/certs/demo-ca.crt"), ""))
	leaf, err := ca.Issue(testpki.Options{CommonName: "agent.localhost", DNSNames: []string{"agent.localhost"}, NotBefore: from, NotAfter: until})
	must(t, err)
	must(t, leaf.WriteFiles(ex("quickstart/certs/agent.localhost.crt"), ex("quickstart/certs/agent.localhost.key"), ca))
	partners, err := testpki.NewCA("Example partners CA (DEMO ONLY)", from, until)
	must(t, err)
	must(t, partners.WriteFiles(ex("production/certs/partners-ca.pem"), ""))
}

// examplesDir is where the examples live, relative to this package.
const examplesDir = "../../examples"

func ex(p string) string { return filepath.Join(examplesDir, p) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// chmodKeys gives committed demo keys the 0600 that git cannot record.
func chmodKeys(t *testing.T, root string) {
	t.Helper()
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".key") {
			return os.Chmod(p, 0o600)
		}
		return err
	}))
}

// exampleOptions are how an example is validated when not as it is: the Kubernetes one
// holds manifests beside its endpoint files, and its keys come from a Secret.
var exampleOptions = map[string]schema.Options{
	"kubernetes": {SkipFiles: true, Exclude: []string{"deploy", "kustomization.yaml"}},
}

// TestExamplesAreValid: every example directory validates with no error and no warning.
func TestExamplesAreValid(t *testing.T) {
	chmodKeys(t, examplesDir)
	dirs, err := filepath.Glob(ex("*"))
	must(t, err)
	n := 0
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, err := schema.Load(exampleOptions[filepath.Base(dir)], dir)
			must(t, err)
			for _, d := range res.Diagnostics {
				t.Errorf("%s", d)
			}
			if res.Endpoints == 0 {
				t.Error("example has no endpoint")
			}
		})
	}
	if n < 2 {
		t.Fatalf("found %d example directories, want quickstart and production at least", n)
	}
}

// TestQuickstartHasAllModes keeps the quickstart a tour of the three termination modes.
func TestQuickstartHasAllModes(t *testing.T) {
	chmodKeys(t, ex("quickstart"))
	res, err := schema.Load(schema.Options{}, ex("quickstart"))
	must(t, err)
	modes := map[string]bool{}
	for _, ep := range res.Config.Endpoints {
		modes[ep.TerminateAt] = true
		if !strings.HasSuffix(ep.Domain, ".localhost") {
			t.Errorf("quickstart endpoint %s uses %s; keep the quickstart on *.localhost", ep.Name, ep.Domain)
		}
	}
	for _, m := range []string{schema.TerminateEdge, schema.TerminateAgent, schema.TerminateUpstream} {
		if !modes[m] {
			t.Errorf("quickstart has no %s-terminated endpoint", m)
		}
	}
}

// TestEveryExampleFileNamesTheSchema: editors find the schema through this first line,
// in every file of an example that tlsd reads. It names the schema's $id, a URL, so that
// a file copied out of the repository still finds it.
func TestEveryExampleFileNamesTheSchema(t *testing.T) {
	dirs, err := filepath.Glob(ex("*"))
	must(t, err)
	var doc struct {
		ID string `json:"$id"`
	}
	must(t, json.Unmarshal(schema.JSON, &doc))
	if !strings.HasPrefix(doc.ID, "https://") || !strings.HasSuffix(doc.ID, "/schema/endpoint.schema.json") {
		t.Fatalf("the schema's $id %q is not the URL of the file", doc.ID)
	}
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		res, err := schema.Load(exampleOptions[filepath.Base(dir)], dir)
		must(t, err)
		if res.Config == nil {
			continue // TestExamplesAreValid says why
		}
		for _, f := range res.Config.Files {
			data, err := os.ReadFile(f)
			must(t, err)
			if want := "# yaml-language-server: $schema=" + doc.ID + "\n"; !strings.HasPrefix(string(data), want) {
				t.Errorf("%s does not start with %q", f, strings.TrimSpace(want))
			}
		}
	}
}

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	must(t, err)
	return string(data)
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestReadmeSnippets: every ```yaml block of the README is a valid configuration (files
// not checked), unless its first line says "# expect: CODE", in which case it must fail
// with exactly that code. YAML that is not tlsd configuration (CI jobs) is fenced ```yml.
func TestReadmeSnippets(t *testing.T) {
	blocks := yamlBlock.FindAllStringSubmatch(readme(t), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d yaml blocks in README.md", len(blocks))
	}
	for i, b := range blocks {
		snippet := b[1]
		res, err := schema.LoadData(schema.Options{SkipFiles: true}, "README.md", []byte(snippet))
		must(t, err)
		want := ""
		if m := regexp.MustCompile(`^# expect: (\S+)`).FindStringSubmatch(snippet); m != nil {
			want = m[1]
		}
		var codes []string
		for _, d := range res.Diagnostics {
			codes = append(codes, d.Code)
		}
		switch {
		case want == "" && len(codes) > 0:
			t.Errorf("README yaml block %d is not valid:\n%s\n%v", i+1, snippet, res.Diagnostics)
		case want != "" && !slices.Equal(codes, []string{want}):
			t.Errorf("README yaml block %d: codes %v, want [%s]:\n%s", i+1, codes, want, snippet)
		}
	}
}

// TestReadmeDocumentsEverySchemaProperty: the config reference lists every field.
func TestReadmeDocumentsEverySchemaProperty(t *testing.T) {
	var tree map[string]any
	must(t, json.Unmarshal(schema.JSON, &tree))
	doc := readme(t)
	for _, name := range propertyNames(tree) {
		// As written in the reference tables: `name` or dotted, `tls.certificate.crt`.
		if !regexp.MustCompile("`([a-z0-9_]+\\.)*" + name + "`").MatchString(doc) {
			t.Errorf("README.md does not document the field `%s`", name)
		}
	}
}

func propertyNames(node any) []string {
	var out []string
	switch n := node.(type) {
	case map[string]any:
		if props, ok := n["properties"].(map[string]any); ok {
			for name := range props {
				out = append(out, name)
			}
		}
		for _, v := range n {
			out = append(out, propertyNames(v)...)
		}
	case []any:
		for _, v := range n {
			out = append(out, propertyNames(v)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestReadmeDocumentsEveryCode: operators look diagnostic codes up in the README.
func TestReadmeDocumentsEveryCode(t *testing.T) {
	doc := readme(t)
	for _, c := range schema.Codes {
		if !strings.Contains(doc, "`"+c.Name+"`") {
			t.Errorf("README.md does not document the diagnostic code `%s`", c.Name)
		}
	}
}

// TestReadmeDocumentsEveryMetric: every metric /metrics serves is in the README's table.
func TestReadmeDocumentsEveryMetric(t *testing.T) {
	doc := readme(t)
	for name := range admin.MetricHelp {
		if !strings.Contains(doc, "| `"+name+"` |") {
			t.Errorf("README.md does not document the metric %s", name)
		}
	}
}
