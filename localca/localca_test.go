package localca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"sync"
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
