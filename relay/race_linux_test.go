package relay

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCloseRacesStart: a Close that comes while Start runs (or before it) ends the relay
// once and leaves nothing in the loop's table of halves.
func TestCloseRacesStart(t *testing.T) {
	l := newLoop(t)
	const relays = 300
	var finished atomic.Int64
	var wg sync.WaitGroup
	for range relays {
		client, near := tcpPair(t)
		nearUp, upstream := tcpPair(t)
		r, err := l.NewRelay(near, nearUp)
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int32
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.Start(func(int64, int64, error) {
				if calls.Add(1) != 1 {
					t.Error("done ran twice")
				}
				finished.Add(1)
			})
		}()
		go func() { defer wg.Done(); r.Close() }()
		t.Cleanup(func() { client.Close(); upstream.Close() })
	}
	wg.Wait()
	if !eventuallyTrue(5*time.Second, func() bool { return finished.Load() == relays }) {
		t.Fatalf("%d of %d relays finished", finished.Load(), relays)
	}
	l.mu.Lock()
	left := len(l.halves)
	l.mu.Unlock()
	if left != 0 {
		t.Errorf("%d halves left in the loop after every relay ended", left)
	}
}

// TestCloseRightAfterStarted: a Close at the worst moment, once Start has published that
// the relay started and before it armed the halves, ends the relay once and leaves no
// half in the loop's table. (Start used to register the halves after that moment, and a
// Close there left them in the table for good.)
func TestCloseRightAfterStarted(t *testing.T) {
	l := newLoop(t)
	l.testStarted = func(r *Relay) { r.Close() }
	for range 20 {
		client, near := tcpPair(t)
		nearUp, upstream := tcpPair(t)
		r, err := l.NewRelay(near, nearUp)
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int32
		r.Start(func(int64, int64, error) { calls.Add(1) })
		if n := calls.Load(); n != 1 {
			t.Fatalf("done ran %d times", n)
		}
		client.Close()
		upstream.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.halves) != 0 {
		t.Errorf("%d halves left in the loop after every relay ended", len(l.halves))
	}
}

// TestRearmUnderLoad: halves whose events fire as soon as they are armed (ping-pong at
// full speed on many relays) re-arm without failing a healthy connection.
func TestRearmUnderLoad(t *testing.T) {
	l := newLoop(t)
	const relays, rounds = 32, 200
	var wg sync.WaitGroup
	ends := make([]chan relayEnd, relays)
	for i := range relays {
		client, upstream, _, done := startRelay(t, l)
		ends[i] = done
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { io.Copy(upstream, upstream); upstream.CloseWrite() }() // an echo upstream
			msg, got := []byte("ping"), make([]byte, 4)
			for range rounds {
				if _, err := client.Write(msg); err != nil {
					t.Error(err)
					return
				}
				if _, err := io.ReadFull(client, got); err != nil {
					t.Errorf("echo: %v", err)
					return
				}
			}
			client.CloseWrite()
		}()
	}
	wg.Wait()
	for _, done := range ends {
		if e := wait(t, done); e.err != nil {
			t.Errorf("a healthy relay failed: %v", e.err)
		}
	}
}

func eventuallyTrue(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestArmWithDataPending: a half whose source is readable when Start arms it runs, and
// may park and re-arm, before that first arm has returned; it must not fail with EEXIST.
func TestArmWithDataPending(t *testing.T) {
	l := newLoop(t)
	for range 200 {
		client, near := tcpPair(t)
		nearUp, upstream := tcpPair(t)
		client.Write([]byte("c"))
		upstream.Write([]byte("u"))
		r, err := l.NewRelay(near, nearUp)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan relayEnd, 1)
		r.Start(func(in, out int64, err error) { done <- relayEnd{in, out, err} })
		one := make([]byte, 1)
		io.ReadFull(client, one)
		io.ReadFull(upstream, one)
		client.CloseWrite()
		upstream.CloseWrite()
		if e := wait(t, done); e.err != nil {
			t.Fatalf("a relay armed with data pending failed: %v", e.err)
		}
		client.Close()
		upstream.Close()
	}
}
