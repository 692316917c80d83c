package bench

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHarnessSmoke runs every case once, briefly, against tlsd alone, so that the
// harness cannot rot between `make bench` runs.
func TestHarnessSmoke(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tlsd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tlsd").CombinedOutput(); err != nil {
		t.Fatalf("build tlsd: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatal("taskset (util-linux) is required")
	}
	results, err := Run(Options{TLSD: bin, Dir: dir, Runs: 1, Duration: 200 * time.Millisecond, IdleConns: 20, Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]int{}
	for _, r := range results {
		servers[r.Server]++
		if r.Median() <= 0 && r.Metric != "kB" && !strings.HasPrefix(r.Metric, "added ") { // a difference may be below 0
			t.Errorf("%s %s %s = %v", r.Case, r.Metric, r.Server, r.Values)
		}
	}
	if servers["tlsd"] < 12 || servers["direct"] != 4 || servers[SplitTLSD] < 7 {
		t.Errorf("results per server: %v", servers)
	}
	var table bytes.Buffer
	WriteTable(&table, results)
	for _, want := range []string{"| TLS 1.3 full handshakes | hs/CPU-s |", "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519", "Targets:"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
