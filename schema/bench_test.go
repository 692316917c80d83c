package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// genConfig writes n endpoints spread over files, mixing the three modes.
func genConfig(tb testing.TB, endpoints, files int) string {
	tb.Helper()
	dir := tb.TempDir()
	per := endpoints / files
	for f := 0; f < files; f++ {
		var b strings.Builder
		for i := 0; i < per; i++ {
			n := f*per + i
			fmt.Fprintf(&b, "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: ep-%d\ndomain: ep-%d.team-%d.example.com\n", n, n, f)
			fmt.Fprintf(&b, "listen: \":%d\"\nupstream: 10.0.%d.%d:8443\n", 8443+f%4, f%250, i%250)
			switch n % 3 {
			case 0:
				b.WriteString("terminate_at: edge\ntls:\n  min_version: \"1.3\"\n  certificate:\n    crt: certs/a.crt\n    key: certs/a.key\n")
			case 1:
				b.WriteString("terminate_at: agent\nupstream_proxy_protocol: v2\ntls:\n  certificate: {crt: certs/b.crt, key: certs/b.key}\n")
			}
		}
		sub := filepath.Join(dir, fmt.Sprintf("team-%03d", f/100))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.yaml", f)), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func benchValidate(b *testing.B, endpoints, files int) {
	dir := genConfig(b, endpoints, files)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := Load(Options{SkipFiles: true}, dir)
		if err != nil || res.Config == nil || len(res.Config.Endpoints) != endpoints {
			b.Fatalf("load: %v, %s", err, diagLines(res.Diagnostics))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(endpoints), "ns/endpoint")
}

// BenchmarkValidate is `tlsd validate --skip-files` over 10,000 endpoints in 1,000 files;
// the 20k variant shows the cost stays linear.
func BenchmarkValidate(b *testing.B) {
	b.Run("10k", func(b *testing.B) { benchValidate(b, 10_000, 1_000) })
	b.Run("20k", func(b *testing.B) { benchValidate(b, 20_000, 2_000) })
}
