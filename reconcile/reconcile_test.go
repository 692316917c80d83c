package reconcile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tlsd/tlsd/internal/golden"
	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/schema"
)

func load(t *testing.T, dir string) *schema.Config {
	t.Helper()
	if files, _ := filepath.Glob(filepath.Join(dir, "*.y*ml")); len(files) == 0 {
		if sub, _ := filepath.Glob(filepath.Join(dir, "*", "*.y*ml")); len(sub) == 0 {
			return nil // an empty side: nothing running yet
		}
	}
	res, err := schema.Load(schema.Options{}, dir)
	if err != nil || res.Config == nil {
		t.Fatalf("load %s: %v %v", dir, err, res.Diagnostics)
	}
	return res.Config
}

// TestPlanGolden diffs testdata/CASE/old against testdata/CASE/new and compares the plan's
// text and JSON with the golden files.
func TestPlanGolden(t *testing.T) {
	cases, _ := filepath.Glob(filepath.Join("testdata", "*"))
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			p := Diff(load(t, filepath.Join(dir, "old")), load(t, filepath.Join(dir, "new")))
			golden.Check(t, filepath.Join(dir, "want.txt"), []byte(p.String()))
			js, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join(dir, "want.json"), append(js, '\n'))
		})
	}
}

func ep(name, domain string, mod ...func(*schema.Endpoint)) *schema.Endpoint {
	e := &schema.Endpoint{Name: name, Domain: domain, Upstream: "127.0.0.1:9000", TerminateAt: "upstream"}
	for _, m := range mod {
		m(e)
	}
	return e
}

func cfg(eps ...*schema.Endpoint) *schema.Config { return &schema.Config{Endpoints: eps} }

func TestDiffTable(t *testing.T) {
	edge := func(e *schema.Endpoint) {
		e.TerminateAt = "edge"
		e.TLS = schema.EndpointTLS{MinVersion: "1.2", Issuer: "internal"}
	}
	onListen := func(l string) func(*schema.Endpoint) { return func(e *schema.Endpoint) { e.Listen = l } }
	cases := []struct {
		name      string
		old, new  *schema.Config
		actions   map[string]Action
		fields    map[string][]string
		listeners map[string]Action
		changed   bool
	}{
		{"identical", cfg(ep("a", "a.test")), cfg(ep("a", "a.test")),
			map[string]Action{"a": Keep}, nil, map[string]Action{"": Keep}, false},
		{"position is not a change", cfg(ep("a", "a.test")), cfg(ep("a", "a.test", func(e *schema.Endpoint) { e.Pos.Line = 40 })),
			map[string]Action{"a": Keep}, nil, nil, false},
		{"mode flip", cfg(ep("a", "a.test")), cfg(ep("a", "a.test", edge)),
			map[string]Action{"a": Change}, map[string][]string{"a": {"terminate_at", "tls.min_version", "tls.issuer"}}, nil, true},
		{"added and removed", cfg(ep("a", "a.test")), cfg(ep("b", "b.test")),
			map[string]Action{"a": Remove, "b": Add}, nil, map[string]Action{"": Keep}, true},
		{"listener moves", cfg(ep("a", "a.test")), cfg(ep("a", "a.test", onListen(":9443"))),
			map[string]Action{"a": Change}, map[string][]string{"a": {"listen"}}, map[string]Action{"": Close, ":9443": Open}, true},
		{"from nothing", nil, cfg(ep("a", "a.test")), map[string]Action{"a": Add}, nil, map[string]Action{"": Open}, true},
		{"to nothing", cfg(ep("a", "a.test")), nil, map[string]Action{"a": Remove}, nil, map[string]Action{"": Close}, true},
		{"certificate content", cfg(ep("a", "a.test", func(e *schema.Endpoint) {
			edge(e)
			e.TLS.Issuer, e.TLS.Certificate = "", &schema.CertificateFiles{Crt: "a.crt", Key: "a.key", SHA256: "1111"}
		})), cfg(ep("a", "a.test", func(e *schema.Endpoint) {
			edge(e)
			e.TLS.Issuer, e.TLS.Certificate = "", &schema.CertificateFiles{Crt: "a.crt", Key: "a.key", SHA256: "2222"}
		})), map[string]Action{"a": Change}, map[string][]string{"a": {"tls.certificate"}}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Diff(c.old, c.new)
			if p.Changed() != c.changed {
				t.Errorf("Changed() = %v", p.Changed())
			}
			for _, e := range p.Endpoints {
				if want, ok := c.actions[e.Name]; ok && e.Action != want {
					t.Errorf("endpoint %s: %s, want %s", e.Name, e.Action, want)
				}
				if want, ok := c.fields[e.Name]; ok {
					var got []string
					for _, f := range e.Fields {
						got = append(got, f.Field)
					}
					if !cmp.Equal(got, want) {
						t.Errorf("endpoint %s fields %v, want %v", e.Name, got, want)
					}
				}
			}
			for _, l := range p.Listeners {
				if want, ok := c.listeners[l.Listen]; ok && l.Action != want {
					t.Errorf("listener %q: %s, want %s", l.Listen, l.Action, want)
				}
			}
			if len(p.Endpoints) != len(c.actions) {
				t.Errorf("%d endpoint entries, want %d", len(p.Endpoints), len(c.actions))
			}
		})
	}
}

// TestCertificateRotatedInPlace: new content under the same file names is a change.
func TestCertificateRotatedInPlace(t *testing.T) {
	dir := t.TempDir()
	ca, _ := testpki.NewCA("ca", time.Time{}, time.Time{})
	write := func() {
		leaf, err := ca.Issue(testpki.Options{DNSNames: []string{"a.test"}})
		if err != nil {
			t.Fatal(err)
		}
		leaf.WriteFiles(filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"))
	}
	write()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("apiVersion: tlsd/v1\nkind: Endpoint\nname: a\ndomain: a.test\n"+
		"upstream: 127.0.0.1:1\nterminate_at: edge\ntls:\n  certificate: {crt: a.crt, key: a.key}\n"), 0o644)
	before := load(t, dir)
	if p := Diff(before, load(t, dir)); p.Changed() {
		t.Fatalf("reloading the same files is a change:\n%s", p)
	}
	write()
	p := Diff(before, load(t, dir))
	if !p.Changed() || p.Endpoints[0].Fields[0].Field != "tls.certificate" {
		t.Errorf("rotation not seen:\n%s", p)
	}
}
