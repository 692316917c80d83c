package localca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCreateReopenAndPermissions(t *testing.T) {
	dir := t.TempDir()
	ca, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(KeyFile(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	di, _ := os.Stat(dir + "/ca")
	if di.Mode().Perm() != 0o700 {
		t.Errorf("ca directory mode %v, want 0700", di.Mode().Perm())
	}
	if _, ok := ca.Root().PublicKey.(*ecdsa.PublicKey); !ok || !ca.Root().IsCA {
		t.Errorf("root is not an ECDSA CA")
	}
	again, err := Open(dir, nil)
	if err != nil || !again.Root().Equal(ca.Root()) {
		t.Fatalf("reopen gave another root: %v", err)
	}
}

func TestLeafVerifiesAndRenews(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ca, err := Open(t.TempDir(), clock)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := ca.Certificate("App.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	if _, err := c1.Leaf.Verify(x509.VerifyOptions{DNSName: "app.example.com", Roots: roots, CurrentTime: now}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	if c2, _ := ca.Certificate("app.example.com"); c2 != c1 {
		t.Error("a fresh leaf was reissued instead of reused")
	}
	mu.Lock()
	now = now.Add(LeafLifetime * 2 / 3)
	mu.Unlock()
	c3, _ := ca.Certificate("app.example.com")
	if c3 == c1 || !c3.Leaf.NotAfter.After(c1.Leaf.NotAfter) {
		t.Error("leaf not renewed after two thirds of its lifetime")
	}
	w, _ := ca.Certificate("*.example.com")
	if w.Leaf.DNSNames[0] != "*.example.com" {
		t.Errorf("wildcard leaf for %v", w.Leaf.DNSNames)
	}
}

func TestBrokenStateIsAClearError(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := Open(other, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(KeyFile(other))
	os.WriteFile(KeyFile(dir), data, 0o600)
	if _, err := Open(dir, nil); err == nil {
		t.Error("a key that does not match the root was accepted")
	}
	os.Remove(KeyFile(dir))
	if _, err := Open(dir, nil); err == nil {
		t.Error("a root without its key was accepted")
	}
}

func TestKeyWithoutRootIsAClearError(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(RootFile(dir))
	if _, err := Open(dir, nil); err == nil {
		t.Error("a stray key was silently reused or replaced")
	}
}

// TestUnfinishedCreationIsSetAside: what a full disk left of an older creation (an empty
// root.key, no root) no longer refuses every start: it is set aside, a new CA is made,
// and the caller is told.
func TestUnfinishedCreationIsSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(KeyFile(dir)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(KeyFile(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("open over an empty root.key: %v", err)
	}
	if !strings.Contains(ca.Recovered, "unfinished") {
		t.Errorf("Recovered = %q, want a word for the operator", ca.Recovered)
	}
	again, err := Open(dir, nil)
	if err != nil || !again.Root().Equal(ca.Root()) || again.Recovered != "" {
		t.Errorf("reopen: %v, same root %v, recovered %q", err, err == nil && again.Root().Equal(ca.Root()), again.Recovered)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "ca.incomplete-*")); len(aside) != 1 {
		t.Errorf("the unfinished CA was not kept aside: %v", aside)
	}
}

// TestCreationFailureLeavesNothing runs in a child process that may write no file larger
// than 100 bytes, so writing the key fails as on a full disk: Open fails with the reason
// and leaves no CA directory behind, and a later Open creates the CA.
func TestCreationFailureLeavesNothing(t *testing.T) {
	if dir := os.Getenv("TLSD_FSIZE_CHILD"); dir != "" {
		signal.Ignore(syscall.SIGXFSZ) // the write fails with EFBIG instead of killing us
		lim := syscall.Rlimit{Cur: 100, Max: 100}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, nil)
		if err == nil || !errors.Is(err, syscall.EFBIG) {
			t.Fatalf("open with a full disk: %v, want EFBIG", err)
		}
		t.Log("FSIZE-CHILD-OK")
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCreationFailureLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "TLSD_FSIZE_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FSIZE-CHILD-OK") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("a failed creation left %v in the state directory", entries)
	}
	if _, err := Open(dir, nil); err != nil {
		t.Errorf("open once the disk has room: %v", err)
	}
}

// TestConcurrentCreation: processes racing to create the CA end with one CA.
func TestConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	roots := make(chan *x509.Certificate, 8)
	var wg sync.WaitGroup
	for range cap(roots) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := Open(dir, nil)
			if err != nil {
				t.Error(err)
				return
			}
			roots <- ca.Root()
		}()
	}
	wg.Wait()
	close(roots)
	first := <-roots
	for r := range roots {
		if !r.Equal(first) {
			t.Fatal("racing creators ended with different roots")
		}
	}
}

// mapStore is a Store in memory, with a real mutual exclusion for Lock.
type mapStore struct {
	mu   sync.Mutex
	data map[string][]byte
	lock chan struct{}
}

func newMapStore() *mapStore {
	return &mapStore{data: map[string][]byte{}, lock: make(chan struct{}, 1)}
}

func (m *mapStore) Load(_ context.Context, k string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.data[k]; ok {
		return v, nil
	}
	return nil, fs.ErrNotExist
}

func (m *mapStore) Store(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[k] = v
	return nil
}

func (m *mapStore) Lock(context.Context, string) error   { m.lock <- struct{}{}; return nil }
func (m *mapStore) Unlock(context.Context, string) error { <-m.lock; return nil }

// TestOpenSharedAgreesOnOneRoot: edges starting together create one root between them;
// a store holding a root without its key is an error, not a reason to make a new root.
func TestOpenSharedAgreesOnOneRoot(t *testing.T) {
	st := newMapStore()
	roots := make(chan []byte, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := OpenShared(context.Background(), st, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := ca.Certificate("a.test"); err != nil {
				t.Error(err)
			}
			roots <- ca.RootPEM()
		}()
	}
	wg.Wait()
	close(roots)
	first := <-roots
	for r := range roots {
		if !bytes.Equal(r, first) {
			t.Fatal("the edges made different roots")
		}
	}
	delete(st.data, StoreKeyKey)
	if _, err := OpenShared(context.Background(), st, nil); err == nil || !strings.Contains(err.Error(), "but not its key") {
		t.Errorf("a root without its key: %v", err)
	}
	if !bytes.Equal(st.data[StoreRootKey], first) {
		t.Error("the root was replaced")
	}
}
