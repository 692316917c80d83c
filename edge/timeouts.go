package edge

import (
	"io"
	"net"
	"time"

	"github.com/tlsd/tlsd/relay"
)

// watchTimeouts sweeps the open connections every second until stop is closed.
func (s *Server) watchTimeouts(stop <-chan struct{}) {
	t := time.NewTicker(relay.SweepEvery)
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
	t    relay.Timeouts
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
