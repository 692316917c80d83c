// Package testredis runs a real redis-server for tests, on a loopback port of its own
// with its own data directory; it can be stopped and started again on the same port to
// show what an outage does.
package testredis

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsd/tlsd/internal/testport"
)

// Server is one redis-server.
type Server struct {
	t    testing.TB
	Addr string
	dir  string
	cmd  *exec.Cmd
	tls  []string // redis-server's TLS arguments, nil for plain TCP
}

// Start runs redis-server; the test fails without one (CI installs it).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is required (apt-get install redis-server; .ci/run installs it)")
	}
	s := &Server{t: t, Addr: testport.Unused(t), dir: t.TempDir()}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// StartTLS runs redis-server speaking only TLS, with the given certificate and key (clients
// are not asked for certificates).
func StartTLS(t testing.TB, crt, key string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is required (apt-get install redis-server; .ci/run installs it)")
	}
	s := &Server{t: t, Addr: testport.Unused(t), dir: t.TempDir()}
	_, port, _ := net.SplitHostPort(s.Addr)
	s.tls = []string{"--port", "0", "--tls-port", port, "--tls-cert-file", crt, "--tls-key-file", key, "--tls-auth-clients", "no"}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is redis://ADDR/0, or rediss:// for a TLS server.
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr + "/0"
	}
	return "redis://" + s.Addr + "/0"
}

// Restart starts the server again (after Stop) on the same port, with the same data.
func (s *Server) Restart() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", s.dir, "--save", "60 1", "--appendonly", "no", "--protected-mode", "no"}
	s.cmd = exec.Command("redis-server", append(args, s.tls...)...) // the later --port wins
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.answers() {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer on %s:\n%s", s.Addr, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers sends PING and expects PONG.
func (s *Server) answers() bool {
	reply, err := s.Command("PING")
	return err == nil && reply == "+PONG"
}

// Command sends one command and returns its reply: a bulk string's content, an array's
// elements one per line, "(nil)" for a missing value, else the reply line ("+OK", ":1",
// "-ERR ...").
func (s *Server) Command(args ...string) (string, error) {
	c, err := s.dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c, "$%d\r\n%s\r\n", len(a), a)
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	var n int
	switch {
	case line == "$-1" || line == "*-1":
		return "(nil)", nil
	case strings.HasPrefix(line, "$"):
		fmt.Sscanf(line, "$%d", &n)
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case strings.HasPrefix(line, "*"):
		fmt.Sscanf(line, "*%d", &n)
		items := make([]string, 0, n)
		for range n {
			item, err := readReply(r)
			if err != nil {
				return "", err
			}
			items = append(items, item)
		}
		return strings.Join(items, "\n"), nil
	}
	return line, nil
}

// Stop saves the data and ends the server (a no-op when it is not running).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.Command("SHUTDOWN", "SAVE") // the server closes the connection instead of answering
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.tls != nil {
		return tls.DialWithDialer(d, "tcp", s.Addr, &tls.Config{InsecureSkipVerify: true}) // only to see it answers
	}
	return d.Dial("tcp", s.Addr)
}
