package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
)

// bufPool holds copy buffers for connections whose ends are not both TCP sockets (a
// terminated TLS connection); between two *net.TCPConn io.Copy splices in the kernel and
// never touches a buffer.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type closeWriter interface{ CloseWrite() error }

// Pipe copies both ways between client and upstream until both directions end, honouring
// half-close: when one side finishes sending, the other side's write half is shut so that
// protocols which end with a one-way close still complete. It closes both connections and
// returns the bytes copied each way and the first error that was not a normal close.
func Pipe(client, upstream net.Conn) (in, out int64, err error) {
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, upErr = copyClientToUpstream(upstream, client)
	}()
	out, err = copyUpstreamToClient(client, upstream)
	wg.Wait()
	client.Close()
	upstream.Close()
	return in, out, errors.Join(quiet(upErr), quiet(err))
}

// copyClientToUpstream and copyUpstreamToClient are named so goroutine dumps read well.
func copyClientToUpstream(dst, src net.Conn) (int64, error) { return copyHalf(dst, src) }

func copyUpstreamToClient(dst, src net.Conn) (int64, error) { return copyHalf(dst, src) }

func copyHalf(dst, src net.Conn) (int64, error) {
	var n int64
	var err error
	srcTCP, srcOK := src.(*net.TCPConn)
	dstTCP, dstOK := dst.(*net.TCPConn)
	if srcOK && dstOK {
		n, err = spliceCopy(dstTCP, srcTCP)
	} else {
		bp := bufPool.Get().(*[]byte)
		n, err = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
		bufPool.Put(bp)
	}
	if err != nil {
		// The other direction cannot finish normally either: unblock it.
		dst.Close()
		src.Close()
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		if cerr := cw.CloseWrite(); cerr != nil {
			dst.Close()
		}
	} else {
		dst.Close()
	}
	return n, nil
}

// quiet drops the errors of a connection closed by our own side or reset by a peer that
// had finished, which are how proxied connections normally end.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
