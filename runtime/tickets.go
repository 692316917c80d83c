package runtime

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
)

// Session ticket keys rotate every ticketRotation and stay valid for ticketKeyCount
// rotations, so a ticket lives a few hours at most (crypto/tls's default is 7 days,
// which scanners flag).
const (
	ticketRotation = time.Hour
	ticketKeyCount = 4
)

// ticketKeys rotates the session ticket keys of a set of tls.Configs, each with its own
// keys so that a ticket from one endpoint never resumes on another.
type ticketKeys struct {
	mu   sync.Mutex // guards keys
	keys map[*tls.Config][][32]byte
}

func newTicketKeys() *ticketKeys {
	return &ticketKeys{keys: map[*tls.Config][][32]byte{}}
}

// retain makes configs the rotated set: a config new to it gets its first key (before
// it serves a handshake), configs no longer served are forgotten, and the others keep
// their keys, so sessions survive a reload.
func (t *ticketKeys) retain(configs []*tls.Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := make(map[*tls.Config]bool, len(configs))
	for _, c := range configs {
		keep[c] = true
		if _, ok := t.keys[c]; !ok {
			t.rotateLocked(c)
		}
	}
	for c := range t.keys {
		if !keep[c] {
			delete(t.keys, c)
		}
	}
}

func (t *ticketKeys) rotateLocked(cfg *tls.Config) {
	var k [32]byte
	rand.Read(k[:])
	keys := append([][32]byte{k}, t.keys[cfg]...)
	if len(keys) > ticketKeyCount {
		keys = keys[:ticketKeyCount]
	}
	t.keys[cfg] = keys
	cfg.SetSessionTicketKeys(keys)
}

// run rotates every interval until ctx ends.
func (t *ticketKeys) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.mu.Lock()
			for cfg := range t.keys {
				t.rotateLocked(cfg)
			}
			t.mu.Unlock()
		}
	}
}
