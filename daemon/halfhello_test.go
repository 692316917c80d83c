package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// largeHello is a real ClientHello of about 52 KB (a long ALPN list), as a client that
// means harm, or a very odd one, sends.
func largeHello(t testing.TB) []byte {
	protos := make([]string, 200)
	for i := range protos {
		protos[i] = fmt.Sprintf("%03d%s", i, strings.Repeat("x", 250))
	}
	client, server := net.Pipe()
	go func() {
		tls.Client(client, &tls.Config{ServerName: "zk.test", InsecureSkipVerify: true, NextProtos: protos}).Handshake()
		client.Close()
	}()
	var out []byte
	buf := make([]byte, 64<<10)
	for !wholeHello(out) {
		n, err := server.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	server.Close()
	return out
}

// wholeHello reports whether b's handshake records hold the whole ClientHello their
// first handshake header announces.
func wholeHello(b []byte) bool {
	var payload []byte
	for len(b) >= 5 && len(b) >= 5+(int(b[3])<<8|int(b[4])) {
		n := int(b[3])<<8 | int(b[4])
		payload, b = append(payload, b[5:5+n]...), b[5+n:]
	}
	return len(payload) >= 4 && len(payload) >= 4+(int(payload[1])<<16|int(payload[2])<<8|int(payload[3]))
}

func memInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestHalfSentHellosAreBounded: connections that send half of a large ClientHello and
// stall cost bounded memory in aggregate; the ones past the budget are closed at once,
// and an ordinary client is still served.
func TestHalfSentHellosAreBounded(t *testing.T) {
	const conns = 1500
	w := newWorld(t)
	hello := largeHello(t)
	half := hello[:len(hello)/2]
	before := memInUse()
	var open []net.Conn
	for range conns {
		c, err := net.Dial("tcp", w.addr())
		must(t, err)
		open = append(open, c)
		c.Write(half)
	}
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	// Wait until the refusals for the budget stop: every peek is then reading or over.
	refused := func() int { return strings.Count(w.log.String(), "the memory for them is spent") }
	if !eventually(10*time.Second, func() bool {
		n := refused()
		time.Sleep(100 * time.Millisecond)
		return n > 0 && refused() == n
	}) {
		t.Fatalf("no connection was refused for the hello budget; hello of %d bytes", len(hello))
	}
	used := memInUse() - before
	t.Logf("%d connections with half of a %d-byte ClientHello: %.1f MB in use (%.1f kB each), %d closed for the budget",
		conns, len(hello), float64(used)/(1<<20), float64(used)/conns/1024, strings.Count(w.log.String(), "the memory for them is spent"))
	if used > 40<<20 {
		t.Errorf("%.1f MB for %d half-sent hellos, want under 40 MB", float64(used)/(1<<20), conns)
	}
	tc, err := w.dialTLS(&tls.Config{ServerName: "zk.test", RootCAs: pool(w.upstreamCA)})
	if err != nil {
		t.Fatalf("an ordinary client meanwhile: %v", err)
	}
	if got, err := roundTrip(tc, []byte("still served")); err != nil || string(got) != "still served" {
		t.Errorf("echo: %q, %v", got, err)
	}
	tc.Close()
}
