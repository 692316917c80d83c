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

// add gives cfg its first key; call it before cfg serves a handshake.
func (t *ticketKeys) add(cfg *tls.Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rotateLocked(cfg)
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
