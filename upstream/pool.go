package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Balancing policies of a pool.
const (
	RoundRobin       = "round_robin"
	LeastConnections = "least_connections"
	Random           = "random"
	First            = "first" // failover: the first healthy entry in list order
)

// Pool is an endpoint's upstream entries and how one is chosen.
type Pool struct {
	Entries []*Entry
	Policy  string
	next    atomic.Uint64
}

// Entry is one upstream address of a pool.
type Entry struct {
	Addr   string // "host:port" or "unix:PATH"
	Health *Health
	// Active counts the connections open through this entry, for least_connections and
	// /status.
	Active atomic.Int64
}

// Health is what tlsd knows of one upstream address, shared by every endpoint that
// uses it and kept across reloads: failed dials mark it down for a while (passive), and
// active checks, where configured, say whether it answers.
type Health struct {
	mu          sync.Mutex // guards the following fields
	downUntil   time.Time  // passive: no dials before this
	failures    int        // dial failures in a row
	lastErr     string
	checkedDown bool      // the last active check failed
	lastCheck   time.Time // of the last active check
}

// Passive back-off: a failed dial keeps the entry out for 1 s, doubling with each
// failure in a row up to 30 s; the first dial after that is the retry.
const (
	downFirst = time.Second
	downMax   = 30 * time.Second
)

// Up reports whether the address may be dialed now.
func (h *Health) Up(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.checkedDown && !now.Before(h.downUntil)
}

func (h *Health) checkedUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.checkedDown
}

// Failed records a failed dial and takes the address out for a while.
func (h *Health) Failed(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures++
	h.downUntil = now.Add(min(downFirst<<min(h.failures-1, 5), downMax))
	h.lastErr = err.Error()
}

// Succeeded records a dial that worked: the address is up again.
func (h *Health) Succeeded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures, h.downUntil, h.lastErr = 0, time.Time{}, ""
}

// Checked records the outcome of an active check.
func (h *Health) Checked(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checkedDown, h.lastCheck = err != nil, now
	if err != nil {
		h.lastErr = err.Error()
	} else if now.After(h.downUntil) {
		h.lastErr = ""
	}
}

// HealthStatus is an address's health for /status.
type HealthStatus struct {
	Up        bool      `json:"up"`
	DownUntil time.Time `json:"down_until,omitzero"` // passive back-off after failed dials
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Status reports the health.
func (h *Health) Status(now time.Time) HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HealthStatus{Up: !h.checkedDown && !now.Before(h.downUntil), DownUntil: h.downUntil, LastCheck: h.lastCheck, LastError: h.lastErr}
}

// candidates are the entries to try for one connection, in order: the policy's choice
// first, then the others; entries that are down are left out before the turn is taken,
// so a down entry's share spreads over the others instead of falling on its successor.
// Least connections takes turns too, so that ties (connections arriving together) spread.
func (p *Pool) candidates(now time.Time) []*Entry {
	up := p.usable(now)
	n := len(up)
	if n == 0 {
		return up
	}
	start := 0
	switch p.Policy {
	case RoundRobin, "", LeastConnections:
		start = int((p.next.Add(1) - 1) % uint64(n))
	case Random:
		start = rand.IntN(n)
	}
	order := append(append(make([]*Entry, 0, n), up[start:]...), up[:start]...)
	if p.Policy == LeastConnections {
		slices.SortStableFunc(order, func(a, b *Entry) int { return cmp.Compare(a.Active.Load(), b.Active.Load()) })
	}
	return order
}

// usable are the entries that may be dialed now, in list order. A single upstream is
// dialed despite failed dials (there is nothing to fail over to), but not when its active
// check fails.
func (p *Pool) usable(now time.Time) []*Entry {
	up := make([]*Entry, 0, len(p.Entries))
	for _, e := range p.Entries {
		if (len(p.Entries) == 1 && e.Health.checkedUp()) || (len(p.Entries) > 1 && e.Health.Up(now)) {
			up = append(up, e)
		}
	}
	return up
}

// dial connects to the first entry of the pool that answers. A failed dial marks its
// entry down and the next is tried: nothing has reached an upstream yet, so a retry is
// safe. With every entry down the connection is refused at once.
func (p *Pool) dial(ctx context.Context, deadline time.Time) (net.Conn, *Entry, error) {
	now := time.Now()
	cands := p.candidates(now)
	if len(cands) == 0 {
		return nil, nil, failuref("upstreams_down", "every upstream is down (%s)", p.downList(now))
	}
	var errs []error
	var last *Entry
	for _, e := range cands {
		last = e
		c, err := dialAddr(ctx, e.Addr, deadline)
		if err == nil {
			e.Health.Succeeded()
			return c, e, nil
		}
		errs = append(errs, err)
		if len(p.Entries) > 1 {
			e.Health.Failed(err, time.Now())
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if len(errs) == 1 {
		return nil, last, errs[0]
	}
	return nil, last, failuref("upstreams_down", "no upstream answered: %v", errors.Join(errs...))
}

// downList says which entries are down and why, bounded for the log line.
func (p *Pool) downList(now time.Time) string {
	var parts []string
	for _, e := range p.Entries[:min(len(p.Entries), 8)] {
		st := e.Health.Status(now)
		parts = append(parts, fmt.Sprintf("%s: %s", e.Addr, cmp.Or(st.LastError, "down")))
	}
	if len(p.Entries) > 8 {
		parts = append(parts, fmt.Sprintf("%d more", len(p.Entries)-8))
	}
	return strings.Join(parts, "; ")
}
