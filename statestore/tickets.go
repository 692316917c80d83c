package statestore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/tlsd/tlsd/termination"
)

// The fleet's session-ticket secrets live in one value, rotated by whichever edge finds
// the newest one due, under a lock, and read by every edge each poll. A new secret is
// published a lead of two polls ahead of its ActiveAt, so every edge holds it before any
// seals a ticket with it; each opens tickets for termination.TicketKeyCount rotations.
const (
	ticketsKey  = "tlsd/session-tickets.json"
	ticketsLock = "tlsd_session_tickets"
	// DefaultTicketPoll is how often an edge reads the secrets.
	DefaultTicketPoll = 10 * time.Second
)

// Tickets is a fleet's ticket secrets as this process last read them.
type Tickets struct {
	s    *Store
	now  func() time.Time
	poll time.Duration

	mu      sync.Mutex // guards secrets
	secrets []termination.TicketSecret
}

var _ termination.SharedTickets = (*Tickets)(nil)

// Tickets reads and rotates the fleet's ticket secrets; now and poll may be zero.
func (s *Store) Tickets(now func() time.Time, poll time.Duration) *Tickets {
	if now == nil {
		now = time.Now
	}
	if poll <= 0 {
		poll = DefaultTicketPoll
	}
	return &Tickets{s: s, now: now, poll: poll}
}

// TicketSecrets are the secrets last read, newest first.
func (t *Tickets) TicketSecrets() []termination.TicketSecret {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.secrets
}

// Run syncs every poll until ctx ends. A failed sync keeps the secrets held: tickets go
// on resuming while the store is away.
func (t *Tickets) Run(ctx context.Context) {
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	for {
		if err := t.Sync(ctx); err != nil && ctx.Err() == nil {
			// An unreachable store is logged once by its health; anything else each time.
			level := slog.LevelWarn
			if !t.s.Health().Up {
				level = slog.LevelDebug
			}
			t.s.log.Log(ctx, level, "session ticket secrets not synced; keeping the ones held", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Sync reads the secrets and, if the newest is due, rotates them under the lock.
func (t *Tickets) Sync(ctx context.Context) error {
	secrets, err := t.load(ctx)
	if err != nil {
		return err
	}
	if t.due(secrets) {
		if secrets, err = t.rotate(ctx); err != nil {
			return err
		}
	}
	t.mu.Lock()
	t.secrets = secrets
	t.mu.Unlock()
	return nil
}

// due: no secret yet, or the newest one's successor must be published now to be active
// when it takes over.
func (t *Tickets) due(secrets []termination.TicketSecret) bool {
	return len(secrets) == 0 || !t.now().Before(secrets[0].ActiveAt.Add(termination.TicketRotation-t.lead()))
}

func (t *Tickets) lead() time.Duration { return 2 * t.poll }

func (t *Tickets) rotate(ctx context.Context) ([]termination.TicketSecret, error) {
	if err := t.s.Lock(ctx, ticketsLock); err != nil {
		return nil, err
	}
	defer t.s.Unlock(ctx, ticketsLock)
	secrets, err := t.load(ctx) // another edge may have rotated while this one waited
	if err != nil || !t.due(secrets) {
		return secrets, err
	}
	now := t.now()
	next := termination.TicketSecret{ActiveAt: now} // the first one is active at once
	if len(secrets) > 0 {
		next.ActiveAt = maxTime(secrets[0].ActiveAt.Add(termination.TicketRotation), now.Add(t.lead()))
	}
	rand.Read(next.Name[:])
	rand.Read(next.Secret[:])
	secrets = append([]termination.TicketSecret{next}, secrets...)
	for len(secrets) > 1 && termination.Retired(secrets[len(secrets)-1].ActiveAt, now) {
		secrets = secrets[:len(secrets)-1]
	}
	data, err := json.Marshal(secrets)
	if err != nil {
		return nil, err
	}
	if err := t.s.Store(ctx, ticketsKey, data); err != nil {
		return nil, err
	}
	t.s.log.Info("session ticket secret rotated for the fleet", "active_at", next.ActiveAt, "secrets", len(secrets))
	return secrets, nil
}

func (t *Tickets) load(ctx context.Context) ([]termination.TicketSecret, error) {
	data, err := t.s.Load(ctx, ticketsKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var secrets []termination.TicketSecret
	if err := json.Unmarshal(data, &secrets); err != nil {
		return nil, fmt.Errorf("state store: %s: %w", ticketsKey, err)
	}
	return secrets, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
