//go:build !linux

package relay

import (
	"io"
	"net"
	"syscall"
)

func spliceCopy(dst, src *net.TCPConn) (int64, error) { return io.Copy(dst, src) }

// ReleaseIdlePipes does nothing: only Linux keeps pipes.
func ReleaseIdlePipes() {}

// waitReadable returns at once: the read that follows waits instead.
func waitReadable(syscall.RawConn) error { return nil }
