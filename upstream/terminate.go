package upstream

import (
	"context"
	"crypto/tls"

	"github.com/tlsd/tlsd/relay"
	"github.com/tlsd/tlsd/termination"
)

// Terminator ends TLS at the agent and hands the plaintext to Next. The agent's minimum
// TLS version is fixed at 1.2; the caller's TLS config carries it.
type Terminator struct {
	TLS  *tls.Config
	Next relay.Handler
}

// Serve completes the handshake (within the connection's deadline) and forwards.
func (t *Terminator) Serve(ctx context.Context, c *relay.Conn) {
	tc, err := termination.Handshake(ctx, c, t.TLS)
	if err != nil {
		return
	}
	t.Next.Serve(ctx, &relay.Conn{Conn: tc, Hello: c.Hello, Deadline: c.Deadline, Info: c.Info, Loop: c.Loop, Dialed: c.Dialed})
}
