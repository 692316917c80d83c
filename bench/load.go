// Package bench measures tlsd beside HAProxy and nginx on the same load: the load client
// (also the tlsload command), the servers' CPU time and memory from /proc, and the
// harness that runs every case and prints the table (the benchrun command, make bench).
package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HelloBytes is a real ClientHello for sni, the first flight of a passthrough connection.
func HelloBytes(sni string) ([]byte, error) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}).Handshake()
		client.Close()
	}()
	buf := make([]byte, 4096)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := server.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// openConn opens a passthrough connection (cfg nil) or a TLS one with cfg.
func openConn(addr string, hello []byte, cfg *tls.Config) (net.Conn, error) {
	if cfg == nil {
		return openPassthrough(addr, hello)
	}
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return tc, nil
}

// openPassthrough connects, sends the ClientHello and waits for the upstream's first
// byte: the route is then established end to end.
func openPassthrough(addr string, hello []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		c.Close()
		return nil, fmt.Errorf("no answer through %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// Bulk writes through conns connections for d and returns the bytes written. With cfg
// nil it is passthrough (ClientHello, then raw bytes); otherwise it completes a TLS
// handshake with cfg and writes application data.
func Bulk(addr string, hello []byte, cfg *tls.Config, conns int, d time.Duration) (int64, error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	deadline := time.Now().Add(d)
	for range conns {
		c, err := openConn(addr, hello, cfg)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			chunk := make([]byte, 256<<10)
			for time.Now().Before(deadline) {
				n, err := c.Write(chunk)
				total.Add(int64(n))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return total.Load(), <-errs
}

// Handshakes runs full (or, with resume, resumed) TLS handshakes for d from workers
// goroutines, each followed by one echoed byte, and returns how many completed and the
// negotiated parameters.
func Handshakes(addr string, cfg *tls.Config, resume bool, workers int, d time.Duration) (int, string, error) {
	var negotiated atomic.Value
	n, err := runWorkers(workers, d, func() func() error {
		c := cfg.Clone()
		if resume {
			c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		}
		first := true
		one := []byte{1}
		return func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(one); err != nil {
				return err
			}
			if _, err := io.ReadFull(conn, one); err != nil {
				return err
			}
			st := conn.ConnectionState()
			if resume && !st.DidResume && !first { // each worker's first is full
				return errors.New("session not resumed")
			}
			first = false
			negotiated.Store(fmt.Sprintf("%s %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), curveName(st)))
			return nil
		}
	})
	neg, _ := negotiated.Load().(string)
	return n, neg, err
}

// runWorkers runs the operations newOp makes, one sequence per worker, until d has
// passed or an operation fails, and counts the operations that succeeded.
func runWorkers(workers int, d time.Duration, newOp func() func() error) (int, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range workers {
		op := newOp()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return int(n.Load()), e
	}
	return int(n.Load()), nil
}

func curveName(st tls.ConnectionState) string {
	if st.CurveID == 0 {
		return ""
	}
	return st.CurveID.String()
}

// ConnRate opens passthrough connections (ClientHello, first byte back, close) for d.
func ConnRate(addr string, hello []byte, workers int, d time.Duration) (int, error) {
	return runWorkers(workers, d, func() func() error {
		return func() error {
			c, err := openPassthrough(addr, hello)
			if err == nil {
				c.Close()
			}
			return err
		}
	})
}

// OpenIdle opens n connections and leaves them idle: passthrough (cfg nil) or TLS
// handshakes completed with cfg. Close them with the returned function.
func OpenIdle(addr string, hello []byte, cfg *tls.Config, n int) (func(), error) {
	conns := make([]net.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range n {
		c, err := openConn(addr, hello, cfg)
		if err != nil {
			closeAll()
			fds, _ := os.ReadDir("/proc/self/fd")
			var lim syscall.Rlimit
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
			return nil, fmt.Errorf("idle connection %d (%d descriptors open here, limit %d): %w", len(conns)+1, len(fds), lim.Cur, err)
		}
		conns = append(conns, c)
	}
	return closeAll, nil
}

// ClientConfig is the client side of the termination cases: X25519 only (OpenSSL 3.0's
// peers have no ML-KEM), trusting roots.
func ClientConfig(sni string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{ServerName: sni, RootCAs: roots, CurvePreferences: []tls.CurveID{tls.X25519}}
}

// Latency sends msgSize-byte messages at rate per second in total, spread over conns
// passthrough connections, on a fixed schedule whatever the answers do (open loop, so a
// slow server cannot slow the load down), and returns every round-trip time.
func Latency(addr string, hello []byte, conns, rate, msgSize int, d time.Duration) ([]time.Duration, error) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, 2*conns)
	interval := time.Duration(int64(time.Second) * int64(conns) / int64(rate))
	for range conns {
		c, err := openPassthrough(addr, hello)
		if err != nil {
			return nil, err
		}
		sent := make(chan time.Time, 1024)
		wg.Add(2)
		go func() { // writer: on schedule
			defer wg.Done()
			defer close(sent)
			msg := make([]byte, msgSize)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			end := time.Now().Add(d)
			for now := range tick.C {
				if now.After(end) {
					return
				}
				sent <- time.Now()
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // reader: each full echo ends one round trip
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, msgSize)
			for t := range sent {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
				rtt := time.Since(t)
				mu.Lock()
				all = append(all, rtt)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return all, <-errs
}

// FirstRequest is the median time, over n connections, from a client's first small write
// after the TLS handshake to the echo of it, for a client that leaves Nagle's algorithm
// on (Python's ssl and many language defaults do): a server that delays its ACK of the
// client's last handshake flight makes that write wait.
func FirstRequest(addr string, cfg *tls.Config, n int) (time.Duration, error) {
	var took []time.Duration
	for range n {
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		raw.(*net.TCPConn).SetNoDelay(false)
		tc := tls.Client(raw, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return 0, err
		}
		start := time.Now()
		msg := []byte("GET / HTTP/1.1\r\n\r\n")
		_, err = tc.Write(msg)
		if err == nil {
			_, err = io.ReadFull(tc, make([]byte, len(msg)))
		}
		took = append(took, time.Since(start))
		tc.Close()
		if err != nil {
			return 0, err
		}
	}
	slices.Sort(took)
	return took[len(took)/2], nil
}
