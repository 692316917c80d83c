package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	goruntime "runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

type relayEnd struct {
	in, out int64
	err     error
}

// startRelay relays client <-> upstream through l: it returns the far ends (what a
// client and an upstream hold) and the relay's result once done.
func startRelay(t *testing.T, l *Loop) (client, upstream *net.TCPConn, r *Relay, done chan relayEnd) {
	t.Helper()
	client, near := tcpPair(t)
	nearUp, upstream := tcpPair(t)
	r, err := l.NewRelay(near, nearUp)
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan relayEnd, 1)
	r.Start(func(in, out int64, err error) { done <- relayEnd{in, out, err} })
	t.Cleanup(func() { client.Close(); upstream.Close() })
	return client, upstream, r, done
}

func newLoop(t *testing.T) *Loop {
	t.Helper()
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func wait(t *testing.T, done chan relayEnd) relayEnd {
	t.Helper()
	select {
	case e := <-done:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("relay never finished")
		return relayEnd{}
	}
}

// Both sides send 8 MiB before reading anything: each direction must flow on its own, or
// the two writers block each other forever.
func TestRelayBothWaysAtOnce(t *testing.T) {
	l := newLoop(t)
	client, upstream, _, done := startRelay(t, l)
	const size = 8 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	type got struct {
		b   []byte
		err error
	}
	send := func(c *net.TCPConn, b []byte, into chan got) {
		go func() {
			if _, err := c.Write(b); err != nil {
				into <- got{err: err}
				return
			}
			c.CloseWrite()
		}()
		go func() { b, err := io.ReadAll(c); into <- got{b, err} }()
	}
	atUpstream, atClient := make(chan got, 2), make(chan got, 2)
	send(client, up, atClient)
	send(upstream, down, atUpstream)
	if g := <-atUpstream; g.err != nil || !bytes.Equal(g.b, up) {
		t.Fatalf("upstream got %d bytes, err %v; want the client's %d", len(g.b), g.err, size)
	}
	if g := <-atClient; g.err != nil || !bytes.Equal(g.b, down) {
		t.Fatalf("client got %d bytes, err %v; want the upstream's %d", len(g.b), g.err, size)
	}
	e := wait(t, done)
	if e.in != size || e.out != size || e.err != nil {
		t.Errorf("relay result = %+v, want %d each way and no error", e, size)
	}
}

// A client that half-closes after its request still gets the whole answer.
func TestRelayHalfClose(t *testing.T) {
	l := newLoop(t)
	client, upstream, _, done := startRelay(t, l)
	client.Write([]byte("request"))
	client.CloseWrite()
	req, err := io.ReadAll(upstream)
	if err != nil || string(req) != "request" {
		t.Fatalf("upstream read %q, %v", req, err)
	}
	upstream.Write([]byte("answer after the client's EOF"))
	upstream.Close()
	resp, err := io.ReadAll(client)
	if err != nil || string(resp) != "answer after the client's EOF" {
		t.Fatalf("client read %q, %v", resp, err)
	}
	if e := wait(t, done); e.in != 7 || e.out != 29 || e.err != nil {
		t.Errorf("relay result = %+v", e)
	}
}

// A client that closes after its request, so that the upstream's last bytes (a TLS
// close_notify, say) meet a closed socket and its reset: passing on the upstream's EOF
// then finds nothing to half-close, or a later write fails. That is how many connections
// end, not a failure.
func TestRelayClientGone(t *testing.T) {
	for name, upstreamSays := range map[string]func(*net.TCPConn){
		"upstream then closes": func(up *net.TCPConn) {
			up.Write([]byte("bye")) // answered by a reset from the closed client
			time.Sleep(50 * time.Millisecond)
			up.Close()
		},
		"upstream keeps writing": func(up *net.TCPConn) {
			for range 3 {
				up.Write([]byte("bye"))
				time.Sleep(30 * time.Millisecond)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLoop(t)
			client, upstream, _, done := startRelay(t, l)
			client.Write([]byte("GET"))
			client.Close()
			if req, err := io.ReadAll(upstream); err != nil || string(req) != "GET" {
				t.Fatalf("upstream read %q, %v", req, err)
			}
			upstreamSays(upstream)
			if e := wait(t, done); e.err != nil {
				t.Errorf("relay ended with %v, want no error", e.err)
			}
		})
	}
}

// A reset that is not preceded by the peer's EOF is a broken connection.
func TestRelayResetIsAnError(t *testing.T) {
	l := newLoop(t)
	client, upstream, _, done := startRelay(t, l)
	client.Write([]byte("GET"))
	if _, err := io.ReadFull(upstream, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	upstream.Write([]byte("unread"))
	time.Sleep(30 * time.Millisecond)
	client.SetLinger(0)
	client.Close()
	if e := wait(t, done); e.err == nil {
		t.Error("a client's reset in the middle of the connection was not reported")
	}
}

// A reset from one peer reaches the other as a reset, not as a clean end it could take
// for the end of the data: through the relay loop, the loop's terminated pipe, and the
// blocking Pipe.
func TestResetPropagates(t *testing.T) {
	resetUpstream := func(up *net.TCPConn) {
		up.Write([]byte("partial answer"))
		up.SetLinger(0)
		up.Close()
	}
	readsReset := func(t *testing.T, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the client's read ended with %v after the upstream reset, want a reset", err)
		}
	}
	t.Run("relay loop", func(t *testing.T) {
		client, upstream, _, done := startRelay(t, newLoop(t))
		client.Write([]byte("GET"))
		io.ReadFull(upstream, make([]byte, 3))
		resetUpstream(upstream)
		readsReset(t, client)
		wait(t, done)
	})
	t.Run("terminated, upstream in the loop", func(t *testing.T) {
		client, _, upstream, done := startPipe(t, newLoop(t))
		client.Write([]byte("GET"))
		io.ReadFull(upstream, make([]byte, 3))
		resetUpstream(upstream)
		readsReset(t, client)
		wait(t, done)
	})
}

// Close ends an idle relay at once: both peers see the connection end and done runs.
func TestRelayCloseWhileIdle(t *testing.T) {
	l := newLoop(t)
	client, upstream, r, done := startRelay(t, l)
	client.Write([]byte("x"))
	one := make([]byte, 1)
	if _, err := io.ReadFull(upstream, one); err != nil {
		t.Fatal(err)
	}
	r.Close()
	e := wait(t, done)
	if e.in != 1 || e.err != nil {
		t.Errorf("relay result = %+v", e)
	}
	for name, c := range map[string]*net.TCPConn{"client": client, "upstream": upstream} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(one); err == nil {
			t.Errorf("%s read %d bytes after Close, want the end of the connection", name, n)
		}
	}
}

func TestRelayCloseBeforeStart(t *testing.T) {
	l := newLoop(t)
	_, near := tcpPair(t)
	nearUp, upstream := tcpPair(t)
	defer upstream.Close()
	r, err := l.NewRelay(near, nearUp)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	done := make(chan relayEnd, 1)
	r.Start(func(in, out int64, err error) { done <- relayEnd{in, out, err} })
	wait(t, done)
	upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := upstream.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("upstream read after Close before Start: %v, want EOF", err)
	}
}

// The point of the Loop: idle relays hold no goroutine.
func TestRelayIdleHoldsNoGoroutine(t *testing.T) {
	l := newLoop(t)
	const n = 100
	var relays []*Relay
	var ends []chan relayEnd
	before := goruntime.NumGoroutine()
	for range n {
		client, upstream, r, done := startRelay(t, l)
		relays, ends = append(relays, r), append(ends, done)
		client.Write([]byte("hello"))
		if _, err := io.ReadFull(upstream, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before+n/10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := goruntime.NumGoroutine() - before; g > n/10 {
		t.Errorf("%d idle relays hold %d goroutines", n, g)
	}
	for i, r := range relays {
		r.Close()
		wait(t, ends[i])
	}
}

// tlsPair is a TLS connection over loopback: the client's end, and the server's end as
// tlsd holds it after terminating, with the raw socket under it.
func tlsPair(t *testing.T) (client *tls.Conn, server *tls.Conn, raw *net.TCPConn) {
	t.Helper()
	ca, err := testpki.NewCA("relay test CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.Options{CommonName: "relay.test", DNSNames: []string{"relay.test"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	c, s := tcpPair(t)
	server = tls.Server(s, &tls.Config{Certificates: []tls.Certificate{pair}})
	client = tls.Client(c, &tls.Config{ServerName: "relay.test", InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, server, s
}

// startPipe runs l.Pipe between a terminated TLS connection and an upstream socket.
func startPipe(t *testing.T, l *Loop) (client *tls.Conn, raw *net.TCPConn, upstream *net.TCPConn, done chan relayEnd) {
	t.Helper()
	client, server, raw := tlsPair(t)
	nearUp, upstream := tcpPair(t)
	t.Cleanup(func() { upstream.Close() })
	done = make(chan relayEnd, 1)
	go func() {
		in, out, err := l.Pipe(server, nearUp)
		done <- relayEnd{in, out, err}
	}()
	return client, raw, upstream, done
}

func TestLoopPipeTerminated(t *testing.T) {
	l := newLoop(t)
	client, _, upstream, done := startPipe(t, l)
	const size = 4 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	gotUp := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(upstream); gotUp <- b }()
	go func() { upstream.Write(down); upstream.CloseWrite() }()
	go func() { client.Write(up); client.CloseWrite() }()
	gotDown, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(gotDown, down) {
		t.Fatalf("client got %d bytes, %v; want the upstream's %d", len(gotDown), err, size)
	}
	if b := <-gotUp; !bytes.Equal(b, up) {
		t.Fatalf("upstream got %d bytes, want the client's %d", len(b), size)
	}
	if e := wait(t, done); e.in != size || e.out != size || e.err != nil {
		t.Errorf("pipe result = %+v", e)
	}
}

// Closing the socket under the TLS connection (what a drain timeout does) ends the pipe
// even while the upstream's direction is parked.
func TestLoopPipeClosedFromOutside(t *testing.T) {
	l := newLoop(t)
	client, raw, upstream, done := startPipe(t, l)
	client.Write([]byte("ping"))
	if _, err := io.ReadFull(upstream, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	wait(t, done)
	upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := upstream.Read(make([]byte, 1)); err == nil {
		t.Error("upstream still open after the client's socket was closed")
	}
}

// An idle terminated connection holds one goroutine (the TLS read), not two.
func TestLoopPipeIdleHoldsOneGoroutine(t *testing.T) {
	l := newLoop(t)
	const n = 50
	before := goruntime.NumGoroutine()
	var raws []*net.TCPConn
	var ends []chan relayEnd
	for range n {
		client, raw, upstream, done := startPipe(t, l)
		raws, ends = append(raws, raw), append(ends, done)
		upstream.Write([]byte("hi"))
		if _, err := io.ReadFull(client, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before+n+n/10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := goruntime.NumGoroutine() - before; g > n+n/10 {
		t.Errorf("%d idle terminated pipes hold %d goroutines", n, g)
	}
	for i, raw := range raws {
		raw.Close()
		wait(t, ends[i])
	}
}

// Whatever the size of a TLS record, its bytes reach the upstream before the client
// sends more: the read of the next record never holds back the last one.
func TestLoopPipeRecordSizes(t *testing.T) {
	l := newLoop(t)
	client, _, upstream, done := startPipe(t, l)
	for _, size := range []int{1, 1023, 1024, 1025, 8 << 10, 16 << 10, 16<<10 + 1, 100 << 10, 3} {
		msg := make([]byte, size)
		rand.Read(msg)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(upstream, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d-byte message: upstream read %v, equal %v", size, err, bytes.Equal(got, msg))
		}
	}
	client.Close()
	upstream.Close()
	wait(t, done)
}

// An upstream that resets after the client's EOF broke the connection: its reset comes
// from the upstream, whose answer was cut, not from a client that left.
func TestRelayUpstreamResetAfterClientEOFIsAnError(t *testing.T) {
	l := newLoop(t)
	client, upstream, _, done := startRelay(t, l)
	client.Write([]byte("GET"))
	client.CloseWrite()
	if _, err := io.ReadAll(upstream); err != nil {
		t.Fatal(err)
	}
	upstream.SetLinger(0)
	upstream.Close()
	if e := wait(t, done); e.err == nil {
		t.Error("the upstream's reset was not reported")
	}
}

// The blocking Pipe (tunnel streams, systems without the loop) tells the same apart.
func TestPipePeerLeftOrReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		upstream  func(*net.TCPConn)
		wantError bool
	}{
		{"client left, upstream says goodbye", func(up *net.TCPConn) {
			for range 3 {
				up.Write([]byte("bye"))
				time.Sleep(30 * time.Millisecond)
			}
			up.Close()
		}, false},
		{"upstream resets", func(up *net.TCPConn) { up.SetLinger(0); up.Close() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, near := tcpPair(t)
			nearUp, upstream := tcpPair(t)
			done := make(chan error, 1)
			go func() { _, _, err := Pipe(near, nearUp); done <- err }()
			client.Write([]byte("GET"))
			if tc.wantError {
				client.CloseWrite()
			} else {
				client.Close()
			}
			if _, err := io.ReadAll(upstream); err != nil {
				t.Fatal(err)
			}
			tc.upstream(upstream)
			select {
			case err := <-done:
				if (err != nil) != tc.wantError {
					t.Errorf("Pipe error = %v, want error: %v", err, tc.wantError)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Pipe never returned")
			}
			client.Close()
		})
	}
}
