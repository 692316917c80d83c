package relay

import (
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// SocketActivity reads from the kernel how long a connection's TCP socket has moved no
// data either way, and whether one direction has ended (a FIN sent or received). The
// kernel keeps these for every socket anyway, so timeouts cost tlsd no timer, goroutine
// or counter per connection, and no work in the copy loops. c may wrap the socket (a
// TLS connection, a replaying conn).
func SocketActivity(c net.Conn) (idle time.Duration, halfClosed bool, err error) {
	tcp, ok := socketOf(c).(*net.TCPConn)
	if !ok {
		return 0, false, errors.ErrUnsupported
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, false, err
	}
	if ierr != nil {
		return 0, false, ierr
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond, halfClosedState(info.State), nil
}

// halfClosedState: after the FIN of one side, before the end of both (RFC 9293 states).
func halfClosedState(state uint8) bool {
	switch state {
	case unix.BPF_TCP_FIN_WAIT1, unix.BPF_TCP_FIN_WAIT2, unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_CLOSING, unix.BPF_TCP_LAST_ACK:
		return true
	}
	return false
}

// socketOf unwraps c down to the connection underneath every layer.
func socketOf(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// QuickAck sends at once the ACK the kernel holds back for c's socket. After a TLS
// handshake the server has nothing to send, so the client's last flight waits up to
// 40 ms for a delayed ACK, and a client that leaves Nagle on holds its first request
// until it comes. Setting TCP_QUICKACK sends a pending ACK right away.
func QuickAck(c net.Conn) {
	tcp, ok := socketOf(c).(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tcp.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	}
}
