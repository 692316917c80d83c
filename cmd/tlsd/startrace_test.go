package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChangeDuringStartIsServed: 10,000 endpoints in 1,000 files, and a new file renamed
// into the directory the moment the listener accepts, while the first generation is
// still being put in place. The watches are armed before the first read, so the change
// is served; armed after it, as they once were, it was lost until some other change.
func TestChangeDuringStartIsServed(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	mustT(t, os.MkdirAll(conf, 0o755))
	upstream := echo(t, nil)
	for f := range 1000 {
		var b strings.Builder
		for i := range 10 {
			n := f*10 + i
			fmt.Fprintf(&b, "---\napiVersion: tlsd/v1\nkind: Endpoint\nname: ep-%d\ndomain: ep-%d.test\nupstream: %s\n", n, n, upstream)
		}
		mustT(t, os.WriteFile(filepath.Join(conf, fmt.Sprintf("f%04d.yaml", f)), []byte(b.String()), 0o644))
	}
	listen := freeAddr(t)
	_, out := tlsdProcess(t, "run", "--listen", listen, "--admin", "off", "--state-dir", filepath.Join(dir, "state"), conf)
	waitUntil(t, "the listener accepts", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, out)
	tmp := filepath.Join(dir, "late.yaml")
	mustT(t, os.WriteFile(tmp, []byte("apiVersion: tlsd/v1\nkind: Endpoint\nname: late\ndomain: late.test\nupstream: "+upstream+"\n"), 0o644))
	mustT(t, os.Rename(tmp, filepath.Join(conf, "late.yaml")))
	waitUntil(t, "late.test served", func() bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", listen, &tls.Config{ServerName: "late.test", InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			return true
		}
		// A plain echo upstream answers the ClientHello with its own bytes: the handshake
		// fails, but not with the unknown-SNI alert once tlsd routes the name.
		return !strings.Contains(err.Error(), "unrecognized name")
	}, out)
}
