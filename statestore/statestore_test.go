package statestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tlsd/tlsd/internal/testpki"
	"github.com/tlsd/tlsd/internal/testport"
	"github.com/tlsd/tlsd/internal/testredis"
)

func TestMain(m *testing.M) {
	RouteDriverLog(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func keyFile(t *testing.T) string {
	var k [32]byte
	rand.Read(k[:])
	p := filepath.Join(t.TempDir(), "store.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStorageSemantics holds the store to what certmagic expects of a Storage.
func TestStorageSemantics(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	s := open(t, Options{URL: r.URL()})
	ctx := context.Background()
	for k, v := range map[string]string{"acme/ca/users/a.json": "1", "acme/ca/users/a.key": "2", "acme/ca/certs/x/x.crt": "3", "acme/top": "4"} {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Load(ctx, "acme/ca/users/a.key"); err != nil || string(v) != "2" {
		t.Errorf("Load = %q, %v", v, err)
	}
	if _, err := s.Load(ctx, "acme/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	list, err := s.List(ctx, "acme", false)
	if want := []string{"acme/ca", "acme/top"}; err != nil || !slices.Equal(list, want) {
		t.Errorf("List(acme) = %v, %v; want %v", list, err, want)
	}
	list, _ = s.List(ctx, "acme/ca", true)
	if len(list) != 3 {
		t.Errorf("List(acme/ca, recursive) = %v", list)
	}
	if info, err := s.Stat(ctx, "acme/top"); err != nil || !info.IsTerminal || info.Size != 1 || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat(acme/top) = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "acme/ca"); err != nil || info.IsTerminal {
		t.Errorf("Stat(acme/ca) = %+v, %v; want a directory", info, err)
	}
	if !s.Exists(ctx, "acme/ca/certs") || s.Exists(ctx, "acme/c") {
		t.Error("Exists: a directory is, a prefix of a name is not")
	}
	if err := s.Delete(ctx, "acme/ca"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "acme", true); !slices.Equal(list, []string{"acme/top"}) {
		t.Errorf("after Delete(acme/ca): %v", list)
	}
	if err := s.Delete(ctx, "acme/none"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

// TestPrefixesShareOneRedis: two fleets on one Redis see only their own keys and locks.
func TestPrefixesShareOneRedis(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	a, b := open(t, Options{URL: r.URL(), Prefix: "fleet-a"}), open(t, Options{URL: r.URL(), Prefix: "fleet-b"})
	ctx := context.Background()
	a.Store(ctx, "k", []byte("a"))
	if _, err := b.Load(ctx, "k"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fleet-b sees fleet-a's key: %v", err)
	}
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(ctx, "l")
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Lock(lctx, "l"); err != nil {
		t.Errorf("fleet-b waits for fleet-a's lock: %v", err)
	}
	b.Unlock(ctx, "l")
}

// TestSealedValues: with a key nothing in Redis is readable, values cannot be swapped
// between keys, and a store without the key (or with another) says why it cannot read.
func TestSealedValues(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	kf := keyFile(t)
	s := open(t, Options{URL: r.URL(), KeyFile: kf})
	ctx := context.Background()
	secret := "-----BEGIN EC PRIVATE KEY-----\nsecret material\n"
	if err := s.Store(ctx, "a.key", []byte(secret)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "a.key"); err != nil || string(got) != secret {
		t.Fatalf("Load = %q, %v", got, err)
	}
	raw := command(t, r, "HGET", "tlsd:v:a.key", "d")
	if strings.Contains(raw, "secret material") || !strings.Contains(raw, "tlsd-sealed-v1") {
		t.Errorf("Redis holds %q", raw)
	}
	// Someone with write access to Redis moves the value to another key.
	command(t, r, "COPY", "tlsd:v:a.key", "tlsd:v:c.key")
	command(t, r, "HSET", "tlsd:v:plain.key", "d", "forged")
	for key, want := range map[string]error{"c.key": errOpen, "plain.key": errNotSealed} {
		if _, err := s.Load(ctx, key); !errors.Is(err, want) {
			t.Errorf("Load(%s) = %v, want %v", key, err, want)
		}
	}
	if _, err := open(t, Options{URL: r.URL()}).Load(ctx, "a.key"); !errors.Is(err, errSealed) {
		t.Errorf("without the key: %v, want %v", err, errSealed)
	}
	if _, err := open(t, Options{URL: r.URL(), KeyFile: keyFile(t)}).Load(ctx, "a.key"); !errors.Is(err, errOpen) {
		t.Errorf("with another key: %v, want %v", err, errOpen)
	}
}

// TestLocks: one holder at a time; a holder that works past the TTL keeps the lock; a
// holder that dies loses it within a TTL.
func TestLocks(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	ttl := 600 * time.Millisecond
	a, b := open(t, Options{URL: r.URL(), LockTTL: ttl}), open(t, Options{URL: r.URL(), LockTTL: ttl})
	ctx := context.Background()
	if err := a.Lock(ctx, "order"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*ttl)
	defer cancel()
	if err := b.Lock(wctx, "order"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a lock a holds and renews (for 3 TTLs): %v", err)
	}
	if err := a.Unlock(ctx, "order"); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(ctx, "order"); err != nil {
		t.Fatal(err)
	}
	// b dies holding the lock: it stops renewing; a gets it within about a TTL.
	b.locks.releaseAll()
	start := time.Now()
	if err := a.Lock(ctx, "order"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 2*ttl+time.Second {
		t.Errorf("a waited %v for a dead holder's lock (TTL %v)", waited, ttl)
	}
	if err := b.Unlock(ctx, "order"); err == nil {
		t.Error("b unlocked a lock it no longer holds")
	}
	if v := command(t, r, "GET", "tlsd:lock:order"); v == "(nil)" {
		t.Error("b's Unlock deleted a's lock")
	}
	a.Unlock(ctx, "order")
}

// TestHealthFollowsTheStore: a stopped Redis makes calls fail and Health down; once it
// is back, the next call brings Health up again, and the data is still there.
func TestHealthFollowsTheStore(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	var log bytes.Buffer
	s := open(t, Options{URL: r.URL(), Logger: newLogger(&log)})
	ctx := context.Background()
	s.Store(ctx, "k", []byte("v"))
	if !s.Health().Up {
		t.Fatal("down before the outage")
	}
	r.Stop()
	if _, err := s.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load with Redis stopped: %v", err)
	}
	if h := s.Health(); h.Up || h.LastError == "" {
		t.Errorf("Health during the outage: %+v", h)
	}
	r.Restart()
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("after the outage: %q, %v", v, err)
	}
	if !s.Health().Up {
		t.Error("Health stays down after the store came back")
	}
	for _, want := range []string{"state store unreachable", "state store reachable again"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("c2hvcnQ="), 0o600)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{URL: "http://" + r.Addr}, "want redis://"},
		{Options{URL: "redis://u:hunter2@" + r.Addr + "/99"}, "xxxxx"}, // the password is redacted
		{Options{URL: r.URL(), CAFile: "ca.pem"}, "is for rediss:// URLs"},
		{Options{URL: r.URL(), KeyFile: short}, "want 32 random bytes in base64"},
		{Options{URL: r.URL(), KeyFile: "/nonexistent/key"}, "no such file"},
		{Options{URL: "redis://" + testport.Unused(t) + "/0"}, "connection refused"},
	} {
		_, err := Open(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%+v) = %v, want an error with %q", tc.o, err, tc.want)
		}
	}
}

func newLogger(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRedissVerifiesTheServer: rediss:// with --state-store-ca works, and a server whose
// certificate the CA does not sign is refused.
func TestRedissVerifiesTheServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testpki.NewCA("redis CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(testpki.Options{CommonName: "redis", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	crt, key, caFile := filepath.Join(dir, "r.crt"), filepath.Join(dir, "r.key"), filepath.Join(dir, "ca.crt")
	if err := errors.Join(leaf.WriteFiles(crt, key), ca.WriteFiles(caFile, "")); err != nil {
		t.Fatal(err)
	}
	r := testredis.StartTLS(t, crt, key)
	s := open(t, Options{URL: r.URL(), CAFile: caFile})
	ctx := context.Background()
	if err := s.Store(ctx, "k", []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "over TLS" {
		t.Errorf("Load = %q, %v", v, err)
	}
	if _, err := Open(ctx, Options{URL: r.URL()}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server the system's roots do not vouch for: %v", err)
	}
}

// command runs one Redis command on r, failing the test if Redis does not answer.
func command(t *testing.T, r *testredis.Server, args ...string) string {
	t.Helper()
	reply, err := r.Command(args...)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}
