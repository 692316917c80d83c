package edge

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// LimitSettings are an endpoint's limits; zero means no bound.
type LimitSettings struct {
	MaxConnections int
	MaxPerIP       int
	Rate           int           // new connections per client address per RatePer, in bursts of Rate
	RatePer        time.Duration // time.Second or time.Minute
}

// Limiter counts one endpoint's connections: all of them, those of each client address,
// and the rate of new ones per address. The daemon keeps one per endpoint name for as
// long as the name exists, and each generation's route brings its own settings: a reload
// changes the limits, never the counts, so old and new generations together stay within
// the limits of the newest.
type Limiter struct {
	mu      sync.Mutex // guards the following fields
	total   int
	perIP   map[netip.Addr]int // addresses with open connections only
	buckets *rateTable
}

// NewLimiter makes an empty limiter.
func NewLimiter() *Limiter {
	return &Limiter{perIP: map[netip.Addr]int{}, buckets: newRateTable(DefaultRateTableSize)}
}

// Active is the number of connections holding a place.
func (l *Limiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Admit takes a place for a connection from addr under s, or returns the limit that
// refuses it (code, reason); release gives the place back.
func (l *Limiter) Admit(s LimitSettings, addr netip.Addr, now time.Time) (release func(), code, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case s.MaxConnections > 0 && l.total >= s.MaxConnections:
		return nil, "max_connections", fmt.Sprintf("limit max_connections reached (%d)", s.MaxConnections)
	case s.MaxPerIP > 0 && l.perIP[addr] >= s.MaxPerIP:
		return nil, "max_connections_per_ip", fmt.Sprintf("limit max_connections_per_ip reached (%d) for %s", s.MaxPerIP, addr)
	case s.Rate > 0 && !l.buckets.take(addr, now, s.Rate, s.RatePer):
		return nil, "rate_per_ip", fmt.Sprintf("limit rate_per_ip reached (%d per %s) for %s", s.Rate, s.RatePer, addr)
	}
	l.total++
	l.perIP[addr]++
	return sync.OnceFunc(func() { l.release(addr) }), "", ""
}

func (l *Limiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[addr]--; l.perIP[addr] <= 0 {
		delete(l.perIP, addr)
	}
}

// DefaultRateTableSize bounds the addresses whose rate is remembered: a scan from more
// addresses evicts the least recently seen (about 100 bytes each, 10 MB in all).
const DefaultRateTableSize = 100_000

// rateTable holds a token bucket per client address, least recently used first out.
type rateTable struct {
	max   int
	order *list.List // of *bucket, most recent at the front
	byIP  map[netip.Addr]*list.Element
}

type bucket struct {
	addr   netip.Addr
	tokens float64
	at     time.Time
}

func newRateTable(max int) *rateTable {
	return &rateTable{max: max, order: list.New(), byIP: map[netip.Addr]*list.Element{}}
}

// take spends a token of addr's bucket (rate per `per`, holding at most rate), if any.
func (t *rateTable) take(addr netip.Addr, now time.Time, rate int, per time.Duration) bool {
	e := t.byIP[addr]
	if e == nil {
		if t.order.Len() >= t.max {
			oldest := t.order.Back()
			delete(t.byIP, oldest.Value.(*bucket).addr)
			t.order.Remove(oldest)
		}
		e = t.order.PushFront(&bucket{addr: addr, tokens: float64(rate), at: now})
		t.byIP[addr] = e
	}
	t.order.MoveToFront(e)
	b := e.Value.(*bucket)
	b.tokens = min(float64(rate), b.tokens+now.Sub(b.at).Seconds()*float64(rate)/per.Seconds())
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ConnectionBudget bounds the connections of every listener together
// (--max-connections). Its methods are safe on nil (no bound).
type ConnectionBudget struct {
	n   atomic.Int64
	max int64
}

// NewConnectionBudget allows max connections at once.
func NewConnectionBudget(max int) *ConnectionBudget { return &ConnectionBudget{max: int64(max)} }

func (b *ConnectionBudget) take() bool {
	if b == nil {
		return true
	}
	if b.n.Add(1) > b.max {
		b.n.Add(-1)
		return false
	}
	return true
}

func (b *ConnectionBudget) give() {
	if b != nil {
		b.n.Add(-1)
	}
}

// Max is the bound.
func (b *ConnectionBudget) Max() int { return int(b.max) }
