package schema

import (
	"os"
	"testing"
)

// TestWriteBenchConfig writes the benchmark's directory to $TLSD_BENCH_DIR, to time the
// real command on it: TLSD_BENCH_DIR=some/dir go test -run TestWriteBenchConfig ./schema
func TestWriteBenchConfig(t *testing.T) {
	dst := os.Getenv("TLSD_BENCH_DIR")
	if dst == "" {
		t.Skip("set TLSD_BENCH_DIR to write the generated benchmark configuration")
	}
	src := genConfig(t, 10_000, 1_000)
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}
