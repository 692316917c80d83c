//go:build !linux

package proxy

import (
	"io"
	"net"
)

func spliceCopy(dst, src *net.TCPConn) (int64, error) { return io.Copy(dst, src) }

// ReleaseIdlePipes does nothing: only Linux keeps pipes.
func ReleaseIdlePipes() {}
