package edge

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// Timeouts close a route's open connections; zero means none.
type Timeouts struct {
	Idle        time.Duration // no byte either way for this long
	MaxLifetime time.Duration // open this long
	HalfClose   time.Duration // silent this long once one side has ended its writes
}

// Any says whether a timeout is set.
func (t Timeouts) Any() bool { return t.Idle > 0 || t.MaxLifetime > 0 || t.HalfClose > 0 }

// SweepEvery is how often open connections are looked at: timeouts act within a second.
const SweepEvery = time.Second

// Verdict decides a connection's fate from its age and the kernel's view of its socket
// (known is false where the system cannot tell): a code and reason when a timeout has
// passed, else how long until the next look is worth it.
func (t Timeouts) Verdict(age, idle time.Duration, halfClosed, known bool) (code, reason string, wait time.Duration) {
	switch {
	case t.MaxLifetime > 0 && age >= t.MaxLifetime:
		return "max_lifetime", fmt.Sprintf("open for %s, the endpoint's max_lifetime", t.MaxLifetime), 0
	case known && t.Idle > 0 && idle >= t.Idle:
		return "idle", fmt.Sprintf("idle for %s", t.Idle), 0
	case known && halfClosed && t.HalfClose > 0 && idle >= t.HalfClose:
		return "half_close", fmt.Sprintf("half-closed and silent for %s", t.HalfClose), 0
	}
	wait = time.Hour
	if t.MaxLifetime > 0 {
		wait = min(wait, t.MaxLifetime-age)
	}
	if known && t.Idle > 0 {
		wait = min(wait, t.Idle-idle)
	}
	if known && t.HalfClose > 0 {
		if halfClosed {
			wait = min(wait, t.HalfClose-idle)
		} else {
			wait = min(wait, t.HalfClose/4) // until a half-close shows
		}
	}
	return "", "", max(wait, SweepEvery)
}

// watchTimeouts sweeps the open connections every second until stop is closed.
func (s *Server) watchTimeouts(stop <-chan struct{}) {
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.sweepTimeouts(now)
		}
	}
}

// due is a connection whose timeouts are to be looked at.
type due struct {
	conn net.Conn
	o    *tracked
	t    Timeouts
}

// sweepTimeouts closes the connections whose timeout has passed. The kernel is asked
// about each socket outside s.mu, and only for connections whose next look is due.
func (s *Server) sweepTimeouts(now time.Time) {
	s.mu.Lock()
	var look []due
	for c, o := range s.open {
		if o.route != nil && o.route.Timeouts.Any() && o.expired == "" && !now.Before(o.nextLook) {
			look = append(look, due{c, o, o.route.Timeouts})
		}
	}
	s.mu.Unlock()
	var closers []io.Closer
	for _, d := range look {
		idle, half, err := relay.SocketActivity(d.conn)
		code, reason, wait := d.t.Verdict(now.Sub(d.o.since), idle, half, err == nil)
		s.mu.Lock()
		if code != "" && d.o.expired == "" {
			d.o.expired, d.o.expiredWhy = code, reason
			closers = append(closers, d.o.closer)
		}
		d.o.nextLook = now.Add(wait)
		s.mu.Unlock()
	}
	closeAll(closers)
}
