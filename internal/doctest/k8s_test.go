package doctest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// tlsdBinary builds tlsd once for the tests that check command lines written in files.
var tlsdBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tlsd-doctest-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tlsd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tlsd/tlsd/cmd/tlsd").CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + string(out))
	}
	return bin, nil
})

// checkCommandLine fails unless tlsd accepts args: every flag exists and parses (the
// command itself is not run: --help is added).
func checkCommandLine(t *testing.T, where string, args []string) {
	t.Helper()
	bin, err := tlsdBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(slices.Clone(args), "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: tlsd %s: %v\n%s", where, strings.Join(args, " "), err, out)
	}
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc["apiVersion"] == nil || doc["kind"] == nil {
			t.Errorf("%s: a document without apiVersion or kind", path)
		}
		docs = append(docs, doc)
	}
}

// dig follows keys and list indexes through decoded YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestKubernetesExample: the manifests parse; the ConfigMap is made of exactly the
// endpoint files (which TestExamplesAreValid validates); the container's command line is
// one tlsd accepts, serving the directory the ConfigMap is mounted on, with readiness on
// /readyz and time for the drain.
func TestKubernetesExample(t *testing.T) {
	root := ex("kubernetes")
	kust := yamlDocs(t, filepath.Join(root, "kustomization.yaml"))[0]
	var generated []string
	for _, f := range dig(kust, "configMapGenerator", 0, "files").([]any) {
		generated = append(generated, f.(string))
	}
	onDisk, _ := filepath.Glob(filepath.Join(root, "endpoints", "*.yaml"))
	for i := range onDisk {
		onDisk[i], _ = filepath.Rel(root, onDisk[i])
	}
	slices.Sort(generated)
	if !slices.Equal(generated, onDisk) {
		t.Errorf("the ConfigMap holds %v, the endpoints directory %v", generated, onDisk)
	}
	var deployment map[string]any
	for _, res := range dig(kust, "resources").([]any) {
		for _, doc := range yamlDocs(t, filepath.Join(root, res.(string))) {
			if doc["kind"] == "Deployment" {
				deployment = doc
			}
		}
	}
	pod := dig(deployment, "spec", "template", "spec")
	c := dig(pod, "containers", 0)
	var args []string
	for _, a := range dig(c, "args").([]any) {
		args = append(args, a.(string))
	}
	checkCommandLine(t, "the Deployment", args)
	mounted := map[string]bool{}
	for _, m := range dig(c, "volumeMounts").([]any) {
		mounted[dig(m, "mountPath").(string)] = true
	}
	if !mounted[args[len(args)-1]] {
		t.Errorf("tlsd serves %s, which no volume is mounted on", args[len(args)-1])
	}
	if p := dig(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe on %v, want /readyz", p)
	}
	if g, _ := dig(pod, "terminationGracePeriodSeconds").(int); g <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d leaves no time for a 30 s drain", g)
	}
}

// TestDockerfile: the image's command lines (CMD, HEALTHCHECK) are ones tlsd accepts,
// and the build command names the package that exists.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	must(t, err)
	text := string(data)
	execForm := func(instruction string) []string {
		m := regexp.MustCompile(`(?m)^` + instruction + `.*?(\[.*\])\s*$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("the Dockerfile has no %s in exec form", instruction)
		}
		var args []string
		must(t, json.Unmarshal([]byte(m[1]), &args))
		return args
	}
	checkCommandLine(t, "CMD", execForm("CMD"))
	if hc := execForm("HEALTHCHECK"); hc[0] != "/tlsd" {
		t.Errorf("HEALTHCHECK runs %s", hc[0])
	} else {
		checkCommandLine(t, "HEALTHCHECK", hc[1:])
	}
	if !strings.Contains(text, "./cmd/tlsd") {
		t.Error("the Dockerfile does not build ./cmd/tlsd")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := tlsdBinary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}
