//go:build !linux

package relay

import (
	"errors"
	"net"
)

// Loop relays connections without goroutines while idle; it needs epoll, so elsewhere
// NewLoop fails and callers copy with Pipe.
type Loop struct{}

// NewLoop reports that this system has no relay loop.
func NewLoop() (*Loop, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (l *Loop) Close() error { return nil }

// Relay is not available on this system.
type Relay struct{}

// NewRelay reports that this system has no relay loop.
func (l *Loop) NewRelay(client, upstream *net.TCPConn) (*Relay, error) {
	return nil, errors.ErrUnsupported
}

// Start does nothing.
func (r *Relay) Start(func(in, out int64, err error)) {}

// Close does nothing.
func (r *Relay) Close() error { return nil }

// Pipe copies both ways with the package's Pipe.
func (l *Loop) Pipe(client net.Conn, upstream *net.TCPConn) (in, out int64, err error) {
	return Pipe(client, upstream)
}
