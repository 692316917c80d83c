package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Relay prepares to copy both ways between client and upstream; Start begins. Until
// the relay ends, its Close is how anyone else ends it: closing a socket directly would
// leave a parked direction waiting for an event that never comes.
type Relay struct {
	loop   *Loop
	client net.Conn // a TCP socket, or the plaintext side of a TLS connection (Pipe)
	up     *net.TCPConn
	in     *half // client -> upstream
	out    *half // upstream -> client

	mu       sync.Mutex // guards the following fields and the halves' state
	started  bool
	closed   bool  // both sockets closed (or about to be)
	err      error // the first error that was not a normal close
	finished bool
	done     func(in, out int64, err error)
}

type halfState int

const (
	parked  halfState = iota // in the epoll set, no goroutine
	running                  // a goroutine is copying
	ended                    // EOF passed on, or the relay closed
)

// half is one direction of a Relay.
type half struct {
	id     uint64
	r      *Relay
	src    net.Conn
	dst    net.Conn
	srcTCP *net.TCPConn    // nil when src is not a socket (blocking half)
	srcRC  syscall.RawConn // of srcTCP
	dstRC  syscall.RawConn // set when both ends are sockets: the half splices
	armed  atomic.Bool     // added to the epoll set once (then re-armed with MOD)
	state  halfState       // guarded by r.mu
	bytes  int64           // written only by the goroutine running the half
	sawEOF bool            // the source ended normally; guarded by r.mu
}

// NewRelay readies a relay of client and upstream on l.
func (l *Loop) NewRelay(client, upstream *net.TCPConn) (*Relay, error) {
	r := &Relay{loop: l, client: client, up: upstream}
	var err error
	if r.in, err = newHalf(r, client, upstream, upstream); err != nil {
		return nil, err
	}
	if r.out, err = newHalf(r, upstream, client, client); err != nil {
		return nil, err
	}
	return r, nil
}

// newHalf makes the half that copies src to dst, parked on src's socket; dstTCP, when
// set, is dst as a socket to splice into.
func newHalf(r *Relay, src *net.TCPConn, dst net.Conn, dstTCP *net.TCPConn) (*half, error) {
	h := &half{r: r, src: src, dst: dst, srcTCP: src, state: parked}
	var err error
	if h.srcRC, err = src.SyscallConn(); err != nil {
		return nil, err
	}
	if dstTCP != nil {
		if h.dstRC, err = dstTCP.SyscallConn(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Pipe copies both ways between client, the plaintext side of a TLS connection tlsd
// terminated, and upstream until both directions end, like the package's Pipe. The
// client's direction runs on the calling goroutine, which a TLS read needs (crypto/tls
// may hold decrypted bytes its socket no longer shows); the upstream's direction waits
// parked in the Loop, without a goroutine, and takes a buffer only while bytes flow.
func (l *Loop) Pipe(client net.Conn, upstream *net.TCPConn) (in, out int64, err error) {
	r := &Relay{loop: l, client: client, up: upstream, started: true}
	r.in = &half{r: r, src: client, dst: upstream, state: running}
	if r.out, err = newHalf(r, upstream, client, nil); err != nil {
		return Pipe(client, upstream)
	}
	type result struct {
		in, out int64
		err     error
	}
	done := make(chan result, 1)
	r.done = func(in, out int64, err error) { done <- result{in, out, err} }
	l.register(r.out)
	if err := r.out.arm(); err != nil {
		r.fail(r.out, err)
	}
	r.in.runBlocking()
	res := <-done
	return res.in, res.out, res.err
}

// Start parks both directions; done runs once, when both have ended, with the bytes
// copied each way and the first error that was not a normal close. Both sockets are
// closed by then.
func (r *Relay) Start(done func(in, out int64, err error)) {
	// Registered before started is published: a Close from then on finishes the relay,
	// and finishing forgets the halves, so none stays in the loop's table.
	r.loop.register(r.in)
	r.loop.register(r.out)
	r.mu.Lock()
	r.done, r.started = done, true
	closed := r.closed
	r.mu.Unlock()
	if closed { // Close came first
		r.in.end()
		r.out.end()
		return
	}
	if r.loop.testStarted != nil {
		r.loop.testStarted(r)
	}
	for _, h := range []*half{r.in, r.out} {
		if err := h.arm(); err != nil {
			r.fail(h, err)
			return
		}
	}
}

// Close ends the relay now: both sockets are closed and done runs.
func (r *Relay) Close() error {
	r.shut(nil)
	return nil
}

// claim moves h from parked to running; false if it is not parked.
func (r *Relay) claim(h *half) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.state != parked || r.closed {
		return false
	}
	h.state = running
	return true
}

// arm puts h's source in the epoll set for one event. The epoll_ctl runs inside the
// socket's Control so that the descriptor cannot be closed and reused meanwhile.
func (h *half) arm() error {
	var cerr error
	err := h.srcRC.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(h.id)), Pad: int32(uint32(h.id >> 32))}
		// Marked armed before the ADD: its event may run the half, and the half re-arm,
		// before this call returns; that re-arm must MOD, not ADD again (EEXIST).
		op := unix.EPOLL_CTL_MOD
		if h.armed.CompareAndSwap(false, true) {
			op = unix.EPOLL_CTL_ADD
		}
		eerr := h.r.loop.rc.Control(func(epfd uintptr) { cerr = unix.EpollCtl(int(epfd), op, int(fd), &ev) })
		if cerr == nil {
			cerr = eerr
		}
		if cerr != nil && op == unix.EPOLL_CTL_ADD {
			h.armed.Store(false)
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// runBlocking copies a source that is not a socket until it ends, on the caller's
// goroutine.
func (h *half) runBlocking() {
	n, err := copyBlocking(h.dst, h.src)
	h.bytes = n
	if err != nil {
		h.r.fail(h, err)
		return
	}
	h.eof()
}

// run moves what the source has, keeps moving while more comes within hotWait, and then
// parks the half again, passes on an EOF, or fails the relay.
func (h *half) run() {
	for {
		switch h.hot() {
		case drained:
			continue
		case wentQuiet:
			h.park()
		case sourceEnded:
			h.eof()
		}
		return
	}
}

type burstEnd int

const (
	drained     burstEnd = iota // the source has nothing more for now
	wentQuiet                   // and had nothing for hotWait
	sourceEnded                 // EOF
	failed                      // the relay has been failed
)

// copyBurst copies from source to destination until the source runs dry or ends; on
// an error it fails the relay.
func (h *half) copyBurst() burstEnd {
	if h.dstRC == nil {
		return h.bufferBurst()
	}
	return h.spliceBurst()
}

// bufferBurst reads the source without waiting into a pooled buffer and writes to the
// destination (a TLS connection: crypto/tls must see the bytes to encrypt them).
func (h *half) bufferBurst() burstEnd {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		n, err := readNow(h.srcRC, *bp)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return drained
		case err == nil && n == 0:
			return sourceEnded
		case err == nil:
			_, err = h.dst.Write((*bp)[:n])
			err = wrote(err)
		}
		if err != nil {
			h.r.fail(h, err)
			return failed
		}
		h.bytes += int64(n)
	}
}

// readNow reads what the socket has without waiting; EAGAIN means nothing now.
func readNow(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if !errors.Is(rerr, unix.EINTR) {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, rerr
}

// spliceBurst splices from source to destination socket through a pooled pipe.
func (h *half) spliceBurst() burstEnd {
	p, err := pipes.get()
	if err != nil {
		h.r.fail(h, err)
		return failed
	}
	for {
		n, err := spliceIn(h.srcRC, p)
		switch {
		case errors.Is(err, unix.EAGAIN):
			pipes.put(p)
			return drained
		case err == nil && n == 0:
			pipes.put(p)
			return sourceEnded
		case err == nil:
			err = wrote(spliceOut(h.dstRC, p, n))
		}
		if err != nil {
			p.close() // it may hold bytes that belong to nobody now
			h.r.fail(h, err)
			return failed
		}
		h.bytes += int64(n)
	}
}

// hotWait is how long a direction that just moved bytes waits for more on its goroutine
// before it parks. Interactive traffic (a request, its answer, the next request) then
// keeps the latency of a goroutine woken by the runtime, and a connection that goes quiet
// gives its goroutine back soon after.
const hotWait = 25 * time.Millisecond

// hot waits up to hotWait for bytes and reads them straight into a pooled buffer, so a
// small message costs one read and one write and no pipe. A full buffer means a stream:
// copyBurst moves the rest (spliced between sockets).
func (h *half) hot() burstEnd {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if err := h.srcTCP.SetReadDeadline(time.Now().Add(hotWait)); err != nil {
		h.r.fail(h, err)
		return failed
	}
	n, err := h.srcTCP.Read(*bp)
	// Cleared at once: the non-waiting reads of copyBurst would see an expired deadline.
	if derr := h.srcTCP.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = derr
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return wentQuiet
	case errors.Is(err, io.EOF):
		return sourceEnded
	case err != nil:
		h.r.fail(h, err)
		return failed
	}
	if _, err := h.dst.Write((*bp)[:n]); err != nil {
		h.r.fail(h, wrote(err))
		return failed
	}
	h.bytes += int64(n)
	if n == len(*bp) {
		return h.copyBurst()
	}
	return drained
}

func (h *half) park() {
	h.r.mu.Lock()
	if h.r.closed {
		h.r.mu.Unlock()
		h.end()
		return
	}
	h.state = parked
	h.r.mu.Unlock()
	if err := h.arm(); err != nil {
		h.r.fail(h, err)
	}
}

// eof passes the end of the source on as a half-close of the destination. When there
// is nothing to half-close, or the destination's peer is gone already (it reset the
// connection), the relay ends; that is how connections end, not a failure.
func (h *half) eof() {
	h.r.mu.Lock()
	h.sawEOF = true
	h.r.mu.Unlock()
	if cw, ok := h.dst.(closeWriter); !ok || cw.CloseWrite() != nil {
		h.r.fail(h, nil)
		return
	}
	h.end()
}

// end marks h over; the last half to end finishes the relay.
func (h *half) end() {
	r := h.r
	r.mu.Lock()
	h.state = ended
	last := r.in.state == ended && r.out.state == ended && r.started && !r.finished
	if last {
		r.finished = true
	}
	err := r.err
	r.mu.Unlock()
	if last {
		r.finish(err)
	}
}

func (r *Relay) finish(err error) {
	r.loop.forget(r.in, r.out)
	r.client.Close()
	r.up.Close()
	r.done(r.in.bytes, r.out.bytes, quiet(err))
}

// fail ends the relay because h could not go on.
func (r *Relay) fail(h *half, err error) {
	if r.peerLeft(h, err) {
		err = nil
	}
	if err != nil && isReadError(err) {
		abort(h.dst) // h's source broke: its destination's peer must see it broken too
	}
	r.shut(err)
	h.end()
}

// peerLeft reports whether err is h's destination leaving after that same peer had
// finished sending (see destinationLeft): the connection is over, not broken.
func (r *Relay) peerLeft(h *half, err error) bool {
	if !destinationLeft(err) {
		return false
	}
	other := r.in
	if h == r.in {
		other = r.out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return other.sawEOF
}

// shut closes both sockets once: a running half then fails on its next system call and
// ends itself; parked halves will never be woken, so they end here.
func (r *Relay) shut(err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed, r.err = true, err
	var idle []*half
	for _, h := range []*half{r.in, r.out} {
		if h.state == parked {
			idle = append(idle, h)
		}
	}
	r.mu.Unlock()
	r.client.Close()
	r.up.Close()
	for _, h := range idle {
		h.end()
	}
}

var _ io.Closer = (*Relay)(nil)
