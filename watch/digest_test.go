package watch

import (
	"path/filepath"
	"testing"

	"github.com/tlsd/tlsd/schema"
)

// TestDigest: the same tree in two places has one digest; a comment changes nothing; a
// certificate file's content and a field's value change it.
func TestDigest(t *testing.T) {
	tree := func(comment, pem, upstream string) string {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "ca.pem"), pem)
		write(t, filepath.Join(dir, "a.yaml"), comment+"apiVersion: tlsd/v1\nkind: Endpoint\nname: a\ndomain: a.test\nupstream: "+upstream+
			"\nterminate_at: edge\ntls:\n  issuer: internal\n  mutual_tls:\n    certificate_authorities: [ca.pem]\n")
		return dir
	}
	digest := func(dir string) string {
		res, err := schema.Load(schema.Options{SkipFiles: true}, dir)
		if err != nil || res.Config == nil {
			t.Fatalf("load %s: %v %v", dir, err, res.Diagnostics)
		}
		return Digest(res.Config)
	}
	base := digest(tree("", "CA one", "127.0.0.1:9000"))
	for _, c := range []struct {
		name string
		dir  string
		same bool
	}{
		{"the same tree elsewhere", tree("", "CA one", "127.0.0.1:9000"), true},
		{"a comment added", tree("# a comment\n", "CA one", "127.0.0.1:9000"), true},
		{"the CA file changed", tree("", "CA two", "127.0.0.1:9000"), false},
		{"the upstream changed", tree("", "CA one", "127.0.0.1:9001"), false},
	} {
		if got := digest(c.dir); (got == base) != c.same {
			t.Errorf("%s: digest %s, base %s, want same=%v", c.name, got, base, c.same)
		}
	}
}
