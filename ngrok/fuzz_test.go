package ngrok

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFromConfig: whatever the file holds, the conversion returns an error or a result
// whose endpoint files render, never a panic. The seeds are the golden cases.
func FuzzFromConfig(f *testing.F) {
	cases, _ := filepath.Glob(filepath.Join("testdata", "*", "ngrok.yml"))
	for _, c := range cases {
		data, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("version: 3\nendpoints: [{url: 'tls://x', upstream: {url: 1}}, 7, [], {traffic_policy: {on_tcp_connect: [{actions: [{}, 5]}]}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := FromConfig("ngrok.yml", data, Options{BaseDir: "/etc/ngrok"})
		if err != nil {
			return
		}
		files, _ := res.Files("/srv/tlsd")
		for name, content := range files {
			if strings.HasSuffix(name, ".yaml") && !strings.HasPrefix(string(content), Modeline) {
				t.Fatalf("%s does not start with the modeline", name)
			}
		}
	})
}
