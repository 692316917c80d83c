package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/schema"
)

func TestMain(m *testing.M) {
	// The test binary doubles as tlsd for the tests that need a real process (signals).
	if os.Getenv("TLSD_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if builds.dir != "" {
			os.RemoveAll(builds.dir)
		}
		os.Exit(code)
	}))
}

func tlsd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestValidateStdin: "-" validates the documents of standard input.
func TestValidateStdin(t *testing.T) {
	for _, c := range []struct {
		in   string
		code int
		out  string
	}{
		{validEndpoint, exitOK, "1 file, 1 endpoint: 0 errors"},
		{invalidEndpoint, exitInvalid, "<stdin>:9:16: error: min_version must be a string"},
	} {
		var out, errb bytes.Buffer
		root := newRootCmd(&out, &errb)
		root.SetIn(strings.NewReader(c.in))
		root.SetArgs([]string{"validate", "--color", "never", "-"})
		err := root.Execute()
		code := exitOK
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("validate - of %q: exit %d (%v), stdout:\n%s\nwant %d and %q", c.in, code, err, out.String(), c.code, c.out)
		}
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "endpoint.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const validEndpoint = "apiVersion: tlsd/v1\nkind: Endpoint\nname: a\ndomain: a.example.com\nupstream: 127.0.0.1:9000\n"
const invalidEndpoint = "apiVersion: tlsd/v1\nkind: Endpoint\nname: a\ndomain: a.example.com\nupstream: 127.0.0.1:9000\nterminate_at: edge\ntls:\n  issuer: internal\n  min_version: 1.3\n"

func TestValidateExitCodes(t *testing.T) {
	valid, invalid := writeConfig(t, validEndpoint), writeConfig(t, invalidEndpoint)
	compose := writeConfig(t, validEndpoint)
	mustT(t, os.WriteFile(filepath.Join(compose, "docker-compose.yml"), []byte("services: {web: {image: nginx}}\n"), 0o644))
	cases := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{"valid", []string{"validate", valid}, 0, "1 file, 1 endpoint: 0 errors, 0 warnings", ""},
		{"invalid", []string{"validate", invalid}, 1, "endpoint.yaml:9:16: error: min_version must be a string", ""},
		{"caret", []string{"validate", invalid}, 1, "    9 |   min_version: 1.3\n      |                ^\n", ""},
		{"missing path", []string{"validate", filepath.Join(valid, "nope")}, 2, "", "no such file or directory"},
		{"no args", []string{"validate"}, 2, "", "give the configuration to check: directories or files, e.g. tlsd validate endpoints/"},
		{"no args run", []string{"run"}, 2, "", "give the configuration to serve"},
		{"agent without role", []string{"validate", "--agent", "a", valid}, 2, "", "--agent a needs --role agent"},
		{"stdin with paths", []string{"validate", "-", valid}, 2, "", `"-" (standard input) cannot be combined`},
		{"completion of values", []string{"__complete", "validate", "--format", ""}, 0, "text\njson\ngithub\n", ""},
		{"help names values", []string{"run", "--help"}, 0, "--listen ADDR", ""},
		{"bad format", []string{"validate", "--format", "xml", valid}, 2, "", `unknown format "xml"`},
		{"bad flag", []string{"validate", "--frobnicate", valid}, 2, "", "unknown flag"},
		{"bad color", []string{"validate", "--color", "pink", valid}, 2, "", "--color"},
		{"bad exclude", []string{"validate", "--exclude", "[", valid}, 2, "", `--exclude: exclude pattern "["`},
		{"foreign YAML", []string{"validate", compose}, 1, `docker-compose.yml:1:1: error: missing required field "apiVersion"`, ""},
		{"exclude", []string{"validate", "--exclude", "docker-compose.yml", compose}, 0, "1 file, 1 endpoint: 0 errors", ""},
		{"github", []string{"validate", "--format", "github", invalid}, 1, "::error file=" + filepath.Join(invalid, "endpoint.yaml") + ",line=9,col=16,title=tlsd wrong-type::", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := tlsd(t, c.args...)
			if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
				t.Errorf("tlsd %v = %d\nstdout: %s\nstderr: %s\nwant %d, stdout ∋ %q, stderr ∋ %q",
					c.args, code, out, errOut, c.code, c.out, c.err)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	code, out, _ := tlsd(t, "validate", "--format", "json", writeConfig(t, invalidEndpoint))
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Diagnostics []schema.Diagnostic
		Summary     struct{ Files, Endpoints, Errors, Warnings int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Diagnostics) != 1 || rep.Diagnostics[0].Line != 9 || rep.Diagnostics[0].Column != 16 ||
		rep.Diagnostics[0].Path != "tls.min_version" || rep.Summary.Errors != 1 || rep.Summary.Files != 1 {
		t.Errorf("report = %+v", rep)
	}
	// A valid directory still prints an (empty) array, never null.
	_, out, _ = tlsd(t, "validate", "--format", "json", writeConfig(t, validEndpoint))
	if !strings.Contains(out, `"diagnostics": []`) {
		t.Errorf("valid JSON report: %s", out)
	}
}

func TestValidateColor(t *testing.T) {
	dir := writeConfig(t, invalidEndpoint)
	_, plain, _ := tlsd(t, "validate", dir) // a buffer is not a terminal
	_, colored, _ := tlsd(t, "validate", "--color", "always", dir)
	if strings.Contains(plain, "\x1b[") || !strings.Contains(colored, "\x1b[1;31merror:") {
		t.Errorf("plain has escapes = %v, always has red error = %v", strings.Contains(plain, "\x1b["), strings.Contains(colored, "\x1b[1;31m"))
	}
}

func TestSchemaCommand(t *testing.T) {
	code, out, _ := tlsd(t, "schema")
	if code != 0 || out != string(schema.JSON) || !json.Valid([]byte(out)) {
		t.Errorf("tlsd schema = %d, %d bytes, valid JSON = %v", code, len(out), json.Valid([]byte(out)))
	}
}

func TestHelpTeaches(t *testing.T) {
	_, out, _ := tlsd(t, "validate", "--help")
	for _, want := range []string{"Exit status: 0 valid", "--skip-files", "--format", "tlsd validate --format github"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate --help lacks %q", want)
		}
	}
	code, out, _ := tlsd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tlsd ") {
		t.Errorf("version = %d %q", code, out)
	}
}
