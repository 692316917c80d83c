package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsd/tlsd/tunnel"
)

// delayLine is a userspace WAN path on loopback (the kernel here has no netem): every
// chunk is held for the one-way delay and each direction is paced to a rate. Its buffers
// hold four times bandwidth × delay, so it never pushes back below the rate: what a
// stream through it shows is its own window against the round trip.
type delayLine struct {
	delay time.Duration
	rate  float64 // bytes per second each way
}

type chunk struct {
	b   []byte
	due time.Time
}

// pacer spaces the bytes of one direction of a path, shared by all its connections.
type pacer struct {
	mu   sync.Mutex // guards next
	next time.Time
	rate float64
}

// slot is when n more bytes may go: the schedule keeps its own time, so a sleep that
// oversleeps is made up by the next ones.
func (p *pacer) slot(n int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); p.next.Before(now.Add(-10 * time.Millisecond)) {
		p.next = now // idle for a while: no credit for the gap
	}
	at := p.next
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return at
}

// forward accepts on a new loopback address and relays each connection to target; the
// connections share the path's rate each way.
func (d delayLine) forward(t testing.TB, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	there, back := &pacer{rate: d.rate}, &pacer{rate: d.rate}
	acceptEach(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); d.pump(up, c, there) }()
		go func() { defer wg.Done(); d.pump(c, up, back) }()
		wg.Wait()
		c.Close()
		up.Close()
	})
	return ln.Addr().String()
}

// pump moves src to dst through the delay and the pacing, then half-closes dst.
func (d delayLine) pump(dst, src net.Conn, p *pacer) {
	const size = 64 << 10
	ch := make(chan chunk, max(16, int(4*d.rate*d.delay.Seconds())/size))
	go func() {
		defer close(ch)
		for {
			b := make([]byte, size)
			n, err := src.Read(b)
			if n > 0 {
				ch <- chunk{b[:n], time.Now().Add(d.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(maxTime(c.due, p.slot(len(c.b)))))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range ch {
			}
			return
		}
	}
	dst.(*net.TCPConn).CloseWrite()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// countingSink answers each connection's first bytes with one (as a TLS server answers a
// ClientHello) and counts every byte it receives.
func countingSink(t testing.TB) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var n atomic.Int64
	acceptEach(t, ln, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 256<<10)
		answered := false
		for {
			m, err := c.Read(buf)
			n.Add(int64(m))
			if !answered && m > 0 {
				c.Write([]byte{22})
				answered = true
			}
			if err != nil {
				return
			}
		}
	})
	return ln.Addr().String(), &n
}

// BenchmarkTunnelWAN compares, over a 50 ms round trip capped at 1 Gbit/s between agent
// and edge, the goodput of a direct TCP stream through the same path with passthrough
// and edge-terminated streams through tlsd edge and agent, for 1 and 8 streams. Each
// case runs 3 s; goodput is what the upstream received.
func BenchmarkTunnelWAN(b *testing.B) {
	path := delayLine{delay: 25 * time.Millisecond, rate: 125e6}
	up, received := countingSink(b)
	hello := helloBytes(b, "pt.test")
	direct := path.forward(b, up)
	for _, streams := range []int{1, 8} {
		b.Run(fmt.Sprintf("direct/%d", streams), func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(goodput(b, func() net.Conn { return openPassthrough(b, direct, hello) }, streams, received, 3*time.Second), "Mbit/s")
			}
		})
	}
	config := yamlEndpoint("pt", "pt.test", up, "", "") + "agent: api-agent\n" +
		yamlEndpoint("ed", "ed.test", up, "edge", "  issuer: internal\n") + "agent: api-agent\n"
	for _, window := range []uint32{1 << 20, 8 << 20, tunnel.DefaultWindow} {
		s := startSplitVia(b, config, func(tunnel string) string { return path.forward(b, tunnel) }, window)
		open := map[string]func() net.Conn{
			"passthrough": func() net.Conn { return openPassthrough(b, s.addr(), hello) },
			"edge-terminated": func() net.Conn {
				tc, err := s.dialTLS(&tls.Config{ServerName: "ed.test", RootCAs: s.internalRoots()})
				must(b, err)
				return tc
			},
		}
		for _, name := range []string{"passthrough", "edge-terminated"} {
			for _, streams := range []int{1, 8} {
				b.Run(fmt.Sprintf("%s/window-%dMiB/%d", name, window>>20, streams), func(b *testing.B) {
					for b.Loop() {
						b.ReportMetric(goodput(b, open[name], streams, received, 3*time.Second), "Mbit/s")
					}
				})
			}
		}
	}
}

// goodput writes through streams connections for d and returns what the upstream got,
// in Mbit/s, from the first second on (the path filled).
func goodput(b *testing.B, open func() net.Conn, streams int, received *atomic.Int64, d time.Duration) float64 {
	var wg sync.WaitGroup
	var conns []net.Conn
	for range streams {
		c := open()
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := make([]byte, 256<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return // closed below
				}
			}
		}()
	}
	time.Sleep(time.Second)
	start, n0 := time.Now(), received.Load()
	time.Sleep(d - time.Second)
	got := received.Load() - n0
	took := time.Since(start)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return float64(got) * 8 / took.Seconds() / 1e6
}
