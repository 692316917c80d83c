package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanOffline(t *testing.T) {
	old := writeConfig(t, validEndpoint)
	same := writeConfig(t, validEndpoint)
	changed := writeConfig(t, strings.Replace(validEndpoint, "127.0.0.1:9000", "127.0.0.1:9001", 1))
	invalid := writeConfig(t, invalidEndpoint)
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"no changes", []string{"plan", old, same}, 0, "No changes"},
		{"changes", []string{"plan", old, changed}, 3, "~ upstream: 127.0.0.1:9000 -> 127.0.0.1:9001"},
		{"json", []string{"plan", "--format", "json", old, changed}, 3, `"action": "change"`},
		{"invalid new side", []string{"plan", old, invalid}, 1, ""},
		{"one path without --admin", []string{"plan", old}, 2, ""},
		{"missing path", []string{"plan", old, filepath.Join(old, "nope")}, 2, ""},
		{"bad format", []string{"plan", "--format", "yaml", old, same}, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := tlsd(t, c.args...)
			if code != c.code || !strings.Contains(out, c.out) {
				t.Errorf("tlsd %v = %d\n%s%s", c.args, code, out, stderr)
			}
		})
	}
	_, out, _ := tlsd(t, "plan", "--format", "json", old, changed)
	var p struct {
		Endpoints []struct{ Name, Action string }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Endpoints) != 1 || p.Endpoints[0].Action != "change" {
		t.Errorf("plan JSON = %s (%v)", out, err)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	code, _, stderr := tlsd(t, "status", "--admin", freeAddr(t))
	if code != 2 || !strings.Contains(stderr, "is it running") {
		t.Errorf("status with nothing listening: exit %d, %s", code, stderr)
	}
}
