package edge

import (
	"context"
	"net"
	"time"
)

// Keep-alive of client connections: Go's defaults (probe after 15 s of silence, every
// 15 s, 9 times), so that a passthrough connection whose client vanished is noticed and
// closed instead of held forever.
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// Listen opens a TCP listener for client connections. Where the system lets accepted
// sockets inherit keep-alive from the listening one (Linux), it is set once there rather
// than with four system calls on every accepted connection.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	return listenConfig().Listen(ctx, "tcp", addr)
}
