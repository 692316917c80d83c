package relay

import (
	"errors"
	"net"
)

// Forward copies both ways between the client and up until both directions end, closes
// both, and notes the bytes and any breakage in c.Info. Given the server's relay loop
// it copies without a goroutine per idle direction; a passthrough connection is then
// detached (c.Detach) and Forward returns at once, the loop finishing the connection.
func (c *Conn) Forward(up net.Conn) {
	client, clientTCP := c.Conn.(*net.TCPConn)
	upTCP, upIsTCP := up.(*net.TCPConn)
	switch {
	case c.Loop != nil && c.Detach != nil && clientTCP && upIsTCP:
		if r, err := c.Loop.NewRelay(client, upTCP); err == nil {
			finish := c.Detach(r)
			r.Start(func(in, out int64, err error) { c.record(in, out, err); finish() })
			return
		}
	case c.Loop != nil && upIsTCP: // terminated: the upstream's direction waits in the loop
		c.record(c.Loop.Pipe(c.Conn, upTCP))
		return
	}
	c.record(Pipe(c.Conn, up))
}

func (c *Conn) record(in, out int64, err error) {
	c.Info.BytesIn += in
	c.Info.BytesOut += out
	if err == nil {
		return
	}
	code := "broken"
	var coded interface{ FailureCode() string }
	if errors.As(err, &coded) {
		code = coded.FailureCode()
	}
	c.Info.Fail(code, "connection broken: "+err.Error())
}
