package daemon

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tlsd/tlsd/tunnel"
)

// closedWithin reads c until it ends and says how long that took (at most limit).
func closedWithin(c net.Conn, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return time.Since(start), !(errors.As(err, &ne) && ne.Timeout())
}

// busy echoes a byte every 200 ms for d.
func busy(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	one := make([]byte, 1)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("b")); err != nil {
			t.Fatalf("a busy connection broke: %v", err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			t.Fatalf("a busy connection broke: %v", err)
		}
	}
}

// TestIdleAndLifetimeTimeouts: an idle passthrough and an idle terminated connection are
// closed after timeouts.idle, a busy one is kept, and max_lifetime ends even a busy one.
func TestIdleAndLifetimeTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zk := e.tlsUpstream("zk.test")
	plain := newEchoServer(t, nil)
	e.start(yamlEndpoint("zk", "zk.test", zk.addr(), "", "") + "timeouts:\n  idle: 1s\n" +
		yamlEndpoint("edge", "edge.test", plain.addr(), "edge", "  issuer: internal\n") + "timeouts:\n  idle: 1s\n" +
		yamlEndpoint("old", "old.test", plain.addr(), "edge", "  issuer: internal\n") + "timeouts:\n  max_lifetime: 1500ms\n")
	dial := func(sni string) *tls.Conn {
		cfg := &tls.Config{ServerName: sni, RootCAs: e.internalRoots()}
		if sni == "zk.test" {
			cfg.RootCAs = pool(e.upstreamCA)
		}
		tc, err := e.dialTLS(cfg)
		must(t, err)
		t.Cleanup(func() { tc.Close() })
		return tc
	}
	for _, sni := range []string{"zk.test", "edge.test"} {
		t.Run("idle/"+sni, func(t *testing.T) {
			t.Parallel()
			idle, active := dial(sni), dial(sni)
			busy(t, active, 2500*time.Millisecond) // past the idle timeout, kept
			if took, closed := closedWithin(idle, 5*time.Second); !closed || took > 3*time.Second {
				t.Errorf("the idle connection: closed %v, after %s more", closed, took)
			}
			busy(t, active, 200*time.Millisecond)
		})
	}
	t.Run("max_lifetime", func(t *testing.T) {
		t.Parallel()
		c := dial("old.test")
		start := time.Now()
		one := make([]byte, 1)
		for time.Since(start) < 5*time.Second {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("b")); err != nil {
				break
			}
			if _, err := io.ReadFull(c, one); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if took := time.Since(start); took < 1500*time.Millisecond || took > 4*time.Second {
			t.Errorf("a busy connection of max_lifetime 1.5s ended after %s", took)
		}
	})
	t.Cleanup(func() {
		e.log.waitFor(t, "connection failed", "endpoint=zk", "idle for 1s")
		e.log.waitFor(t, "connection failed", "endpoint=old", "open for 1.5s, the endpoint's max_lifetime")
	})
}

// halfCloseUpstream answers the ClientHello with one byte, reads to the client's end,
// and then either says nothing (the client wrote "hush") or sends a byte every 200 ms
// for 2.5 s and closes.
func halfCloseUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	acceptEach(t, ln, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte{22})
		got, _ := io.ReadAll(c)
		if bytes.HasSuffix(got, []byte("hush")) {
			<-done
			return
		}
		for range 12 {
			time.Sleep(200 * time.Millisecond)
			if _, err := c.Write([]byte("t")); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestHalfCloseTimeout: once the client has ended its writes, a silent upstream gets
// timeouts.half_close before the connection is closed, and one still sending is never
// cut early.
func TestHalfCloseTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(yamlEndpoint("zk", "zk.test", halfCloseUpstream(t), "", "") + "timeouts:\n  half_close: 1s\n")
	hello := helloBytes(t, "zk.test")
	for _, c := range []struct {
		say    string
		closed func(took time.Duration, n int64) bool
	}{
		{"hush", func(took time.Duration, n int64) bool { return took < 4*time.Second }},
		{"talk", func(took time.Duration, n int64) bool { return took >= 2400*time.Millisecond && n == 12 }},
	} {
		t.Run(c.say, func(t *testing.T) {
			t.Parallel()
			conn := openPassthrough(t, e.addr(), hello)
			defer conn.Close()
			conn.Write([]byte(c.say))
			conn.(*net.TCPConn).CloseWrite()
			start := time.Now()
			conn.SetReadDeadline(start.Add(6 * time.Second))
			n, err := io.Copy(io.Discard, conn)
			if took := time.Since(start); !c.closed(took, n) {
				t.Errorf("after the client's FIN: %d bytes in %s (%v)", n, took, err)
			}
		})
	}
	t.Cleanup(func() { e.log.waitFor(t, "connection failed", "half-closed and silent for 1s") })
}

// TestAgentEnforcesTimeouts: the agent closes a stream whose upstream side stays idle,
// judging it on its own socket to the upstream, whatever the edge does.
func TestAgentEnforcesTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	up := newEchoServer(t, nil)
	writeFile(t, e.path("endpoints.yaml"), yamlEndpoint("zk", "zk.test", up.addr(), "", "")+"agent: api-agent\ntimeouts:\n  idle: 1s\n")
	a := NewAgent("api-agent", Options{Logger: slogTo(e.log), HandshakeTimeout: 5 * time.Second})
	_, err := a.Apply(loadConfig(t, e.path("endpoints.yaml")))
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	must(t, err)
	defer client.Close()
	stream, err := ln.Accept() // stands for a tunnel stream
	must(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { client.Close(); <-done }) // a failed test still ends the stream
	go func() {
		defer close(done)
		a.Handle(t.Context(), tunnel.Header{Endpoint: "zk", Client: client.LocalAddr().String(), Local: ln.Addr().String()}, stream)
	}()
	if got, err := roundTrip1(client, "x"); err != nil || got != "x" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if took, closed := closedWithin(client, 5*time.Second); !closed || took > 3*time.Second {
		t.Fatalf("the idle stream: closed %v, after %s", closed, took)
	}
	<-done
	e.log.waitFor(t, "connection failed", "endpoint=zk", "idle for 1s")
}

// roundTrip1 writes msg and reads as many bytes back.
func roundTrip1(c net.Conn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadFull(c, buf)
	c.SetReadDeadline(time.Time{})
	return string(buf), err
}
