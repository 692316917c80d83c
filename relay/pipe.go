package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// bufPool holds copy buffers, taken only while bytes move: for the plaintext of
// terminated connections, and in the relay for small messages between sockets (streams
// are spliced through pipes and never touch a buffer).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// recordBufs hold buffers for reads from a TLS connection: crypto/tls returns at most
// one record's plaintext per Read, 16 KiB.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copyBlocking copies src to dst, blocking in src's reads.
func copyBlocking(dst io.Writer, src io.Reader) (int64, error) {
	if tc, ok := src.(*tls.Conn); ok {
		return copyFromTLS(dst, tc)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(markedWriter{dst}, struct{ io.Reader }{src}, *bp)
}

// writeError marks an error of writing to the destination, as opposed to reading the
// source: it tells which peer went away.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func wrote(err error) error {
	if err == nil {
		return nil
	}
	return &writeError{err}
}

// markedWriter marks its errors as write errors (and hides ReaderFrom, so that copies
// use the pooled buffer).
type markedWriter struct{ w io.Writer }

func (m markedWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	return n, wrote(err)
}

// destinationLeft reports whether err is the destination resetting the connection, or
// gone already. After that peer's own EOF was passed on (it finished sending), it is how
// many connections end: a client that closes once it has its answer while the upstream
// still says goodbye (a TLS close_notify). Not a broken connection.
func destinationLeft(err error) bool {
	var we *writeError
	return errors.As(err, &we) && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

// copyFromTLS copies the plaintext of a TLS connection. Its reads block while the
// connection is idle, and what they block with stays allocated: so they read into a
// small buffer of the connection's own, and take a record-sized one from the pool only
// while records come full (a stream), giving it back after the first short read. An
// idle connection then holds 1 KiB, not 16 or 32.
func copyFromTLS(dst io.Writer, src *tls.Conn) (int64, error) {
	small := make([]byte, 1<<10)
	var big *[]byte
	defer func() {
		if big != nil {
			recordBufs.Put(big)
		}
	}()
	var total int64
	for {
		buf := small
		if big != nil {
			buf = *big
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, wrote(werr)
			}
			total += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF):
			return total, nil
		case err != nil:
			return total, err
		case big == nil && n == len(small): // more of the record is waiting
			big = recordBufs.Get().(*[]byte)
		case big != nil && n < len(*big)/2: // the stream paused
			recordBufs.Put(big)
			big = nil
		}
	}
}

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
	if upErr == nil && destinationLeft(err) { // the client had sent its EOF
		err = nil
	}
	if err == nil && destinationLeft(upErr) { // the upstream had
		upErr = nil
	}
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
	switch {
	case srcOK && dstOK:
		n, err = spliceCopy(dstTCP, srcTCP)
	case srcOK:
		n, err = copyWhenReadable(dst, srcTCP)
	default:
		// A TLS connection may hold decrypted bytes that its socket no longer shows as
		// readable, so the read must block inside crypto/tls, holding the buffer.
		n, err = copyBlocking(dst, src)
	}
	if err != nil {
		// The other direction cannot finish normally either: unblock it. A source that
		// broke (not one that ended) breaks the destination too: its peer must see an
		// abort, never a clean end it could take for a complete transfer.
		if isReadError(err) {
			abort(dst)
		}
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

// copyWhenReadable copies from a TCP socket into dst (the plaintext side of a TLS
// connection tlsd terminated) taking a buffer from the pool only once src has bytes, so
// an idle connection holds none: 32 KiB saved per idle terminated connection.
func copyWhenReadable(dst net.Conn, src *net.TCPConn) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		if err := waitReadable(rc); err != nil {
			return total, err
		}
		bp := bufPool.Get().(*[]byte)
		n, rerr := src.Read(*bp)
		var werr error
		if n > 0 {
			_, werr = dst.Write((*bp)[:n])
			total += int64(n)
		}
		bufPool.Put(bp)
		switch {
		case werr != nil:
			return total, wrote(werr)
		case errors.Is(rerr, io.EOF):
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// isReadError reports whether err came from reading the source (as opposed to writing to
// the destination, or our own side closing the connection).
func isReadError(err error) bool {
	var we *writeError
	return !errors.As(err, &we) && !errors.Is(err, net.ErrClosed)
}

// abort closes c so that its peer sees the connection broken, not ended: the socket
// underneath is reset (linger 0) and closed first, so a TLS layer above it has no chance
// to send its close_notify.
func abort(c net.Conn) {
	inner := c
	for {
		w, ok := inner.(interface{ NetConn() net.Conn }) // *tls.Conn, a replaying conn
		if !ok {
			break
		}
		inner = w.NetConn()
	}
	if tcp, ok := inner.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	inner.Close()
	c.Close()
}

// quiet drops the errors of a connection closed by our own side or reset by a peer that
// had finished, which are how proxied connections normally end.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
