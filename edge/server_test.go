package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// handlerFunc adapts a function to relay.Handler.
type handlerFunc func(ctx context.Context, c *relay.Conn)

func (f handlerFunc) Serve(ctx context.Context, c *relay.Conn) { f(ctx, c) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer serves a table whose one route, ok.test, reports each routed SNI on a channel.
func startServer(t *testing.T, logs *syncBuffer) (*Server, chan string) {
	t.Helper()
	routed := make(chan string, 16)
	table, err := NewTable([]*Route{{Endpoint: "ok", Mode: "upstream", Domain: "ok.test",
		Handler: handlerFunc(func(_ context.Context, c *relay.Conn) { routed <- c.Hello.ServerName; c.Close() })}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ln, table, Config{HandshakeTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	done := make(chan struct{})
	go func() { s.Serve(); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s, routed
}

// sendHello starts a TLS client for sni; the server side only routes it.
func sendHello(t *testing.T, addr, sni string) {
	if err := trySendHello(addr, sni); err != nil {
		t.Fatal(err)
	}
}

// trySendHello connects and starts a handshake for sni in the background.
func trySendHello(addr, sni string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake()
		c.Close()
	}()
	return nil
}

func TestSetTableSwitchesNewConnections(t *testing.T) {
	s, routed := startServer(t, &syncBuffer{})
	sendHello(t, s.Addr().String(), "ok.test")
	if got := <-routed; got != "ok.test" {
		t.Fatalf("routed %q", got)
	}
	other := make(chan string, 1)
	table, _ := NewTable([]*Route{{Endpoint: "new", Domain: "new.test",
		Handler: handlerFunc(func(_ context.Context, c *relay.Conn) { other <- c.Hello.ServerName; c.Close() })}})
	s.SetTable(table)
	sendHello(t, s.Addr().String(), "new.test")
	select {
	case got := <-other:
		if got != "new.test" {
			t.Errorf("routed %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("new table not used")
	}
}

// TestAcceptRecoversFromEMFILE runs in a child process whose file descriptor limit is
// small: the listener must log the failure, back off, and serve again once descriptors
// are free.
func TestAcceptRecoversFromEMFILE(t *testing.T) {
	if os.Getenv("TLSD_EMFILE_CHILD") == "1" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptRecoversFromEMFILE$", "-test.v")
	cmd.Env = append(os.Environ(), "TLSD_EMFILE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "EMFILE-CHILD-OK") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func emfileChild(t *testing.T) {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = uint64(len(fds) + 24)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, routed := startServer(t, logs)
	var clients []net.Conn
	for range 64 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			break // the client side ran out too
		}
		clients = append(clients, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "too many open files") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "accept failed; retrying") {
		t.Fatalf("the listener never hit EMFILE (%d clients):\n%s", len(clients), logs)
	}
	for _, c := range clients {
		c.Close()
	}
	// Descriptors come back as the silent connections' peeks end: offer hellos until one
	// is routed.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		trySendHello(s.Addr().String(), "ok.test") // may still find no descriptor
		select {
		case <-routed:
			t.Log("EMFILE-CHILD-OK")
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("not serving after descriptors were freed:\n%s", logs)
}
