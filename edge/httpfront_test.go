package edge

import (
	"net"
	"testing"
	"time"
)

// TestHTTPListenerBoundsConnections: past its bound the HTTP listener closes new
// connections at once and keeps answering once some end.
func TestHTTPListenerBoundsConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bl := &boundedListener{Listener: ln, slots: make(chan struct{}, 2)}
	defer bl.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	first, second := <-accepted, <-accepted
	third := dial()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Error("a connection past the bound was kept open")
	}
	first.Close()
	fourth := dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Error("a connection after one ended was not accepted")
	}
	for _, c := range []net.Conn{a, b, third, fourth, second} {
		c.Close()
	}
}
