package runtime

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
)

// sink accepts connections, answers one byte (as a TLS server answers a ClientHello), and
// discards what they send.
func sink(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); c.Write([]byte{22}); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// helloBytes is a real ClientHello for sni, to open a passthrough route.
func helloBytes(b *testing.B, sni string) []byte {
	client, server := net.Pipe()
	go func() {
		tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		client.Close()
	}()
	buf := make([]byte, 4096)
	n, _ := server.Read(buf)
	server.Close()
	return buf[:n]
}

// BenchmarkPassthroughCopy measures tlsd's passthrough copy: after the ClientHello, bulk
// bytes go client -> tlsd -> upstream on loopback (spliced in the kernel).
func BenchmarkPassthroughCopy(b *testing.B) {
	e := newEnv(b)
	up := sink(b)
	e.start(yamlEndpoint("bulk", "bulk.test", up.Addr().String(), "", ""))
	c, err := net.Dial("tcp", e.addr())
	must(b, err)
	defer c.Close()
	if _, err := c.Write(helloBytes(b, "bulk.test")); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEdgeHandshake is full TLS 1.3 handshakes (ECDSA P-256 from the internal
// issuer) through tlsd's edge termination path, each followed by one echoed byte.
func BenchmarkEdgeHandshake(b *testing.B) {
	for _, c := range []struct {
		name   string
		curves []tls.CurveID
	}{{"X25519", []tls.CurveID{tls.X25519}}, {"X25519MLKEM768", nil}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			echo := newEchoServer(b, nil)
			e.start(yamlEndpoint("edge", "edge.test", echo.addr(), "edge", "  issuer: internal\n"))
			cfg := &tls.Config{ServerName: "edge.test", RootCAs: e.internalRoots(), CurvePreferences: c.curves}
			one := []byte{1}
			b.ReportAllocs()
			for b.Loop() {
				tc, err := tls.Dial("tcp", e.addr(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				tc.Write(one)
				io.ReadFull(tc, one)
				tc.Close()
			}
		})
	}
}
