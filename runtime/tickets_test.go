package runtime

import (
	"crypto/tls"
	"io"
	"testing"
)

// TestSessionResumption: clients resume with session tickets, also across a key
// rotation, since the previous keys stay valid for a few rotations.
func TestSessionResumption(t *testing.T) {
	w := newWorld(t)
	cfg := &tls.Config{ServerName: "edge.test", RootCAs: w.internalRoots(), ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	connect := func() bool {
		tc, err := w.dialTLS(cfg)
		must(t, err)
		defer tc.Close()
		// TLS 1.3 tickets arrive after the handshake: read once so the client stores one.
		got, err := roundTrip(tc, []byte("x"))
		if err != nil || string(got) != "x" {
			t.Fatalf("echo %q, %v", got, err)
		}
		io.Copy(io.Discard, tc)
		return tc.ConnectionState().DidResume
	}
	if connect() {
		t.Fatal("first connection claims to resume")
	}
	if !connect() {
		t.Error("second connection did not resume")
	}
	w.d.tickets.mu.Lock()
	for c := range w.d.tickets.keys {
		w.d.tickets.rotateLocked(c)
	}
	w.d.tickets.mu.Unlock()
	if !connect() {
		t.Error("no resumption after one key rotation")
	}
}
