//go:build !linux

package relay

import (
	"errors"
	"net"
	"time"
)

// SocketActivity is supported on Linux only; elsewhere idle and half-close timeouts do
// not apply (max_lifetime does).
func SocketActivity(net.Conn) (time.Duration, bool, error) { return 0, false, errors.ErrUnsupported }

// QuickAck is a Linux remedy for delayed ACKs after a handshake; elsewhere it does
// nothing.
func QuickAck(net.Conn) {}
