package relay

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Loop relays connections without a goroutine per direction while they are idle. Each
// direction whose source is a TCP socket is parked in one epoll instance of the Loop
// (one-shot, on that socket); when bytes arrive, a goroutine moves them (splice between
// two sockets, a pooled buffer into a TLS connection) until the source runs dry, waits a
// little for more, re-arms, and ends. An idle passthrough connection costs its two
// sockets and a few hundred bytes of heap, where two blocked goroutines would cost their
// stacks (4 KiB or more each); a terminated one keeps only the goroutine of its TLS read.
// The epoll instance is itself waited on through Go's netpoller, so the Loop holds no
// thread either.
type Loop struct {
	ep *os.File        // the epoll instance; never call its Fd, which makes it blocking
	rc syscall.RawConn // of ep

	mu     sync.Mutex // guards the following fields
	halves map[uint64]*half
	nextID uint64

	done chan struct{} // closed when the dispatcher has returned

	// testStarted, when set (tests only), runs in Start right after the relay is marked
	// started and before its halves are armed: where a concurrent Close is hardest.
	testStarted func(*Relay)
}

// NewLoop starts a Loop; Close ends it.
func NewLoop() (*Loop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay loop: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	f := os.NewFile(uintptr(fd), "relay-epoll") // non-blocking, so the netpoller waits on it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	l := &Loop{ep: f, rc: rc, halves: map[uint64]*half{}, done: make(chan struct{})}
	go l.dispatch()
	return l, nil
}

// Close stops the Loop. Relays still open are not touched: close them first.
func (l *Loop) Close() error {
	err := l.ep.Close()
	<-l.done
	return err
}

// dispatch waits for parked directions whose source became readable (or closed) and
// runs each on a goroutine of its own.
func (l *Loop) dispatch() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		err := l.rc.Read(func(fd uintptr) bool {
			var werr error
			n, werr = unix.EpollWait(int(fd), events, 0)
			if errors.Is(werr, unix.EINTR) {
				n = 0
				return true // try again at once
			}
			return n > 0 // none: wait until the epoll instance is readable
		})
		if err != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			l.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

func (l *Loop) wake(id uint64) {
	l.mu.Lock()
	h := l.halves[id]
	l.mu.Unlock()
	if h == nil || !h.r.claim(h) {
		return // ended meanwhile
	}
	go h.run()
}

func (l *Loop) register(h *half) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextID++
	h.id = l.nextID
	l.halves[h.id] = h
}

func (l *Loop) forget(hs ...*half) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hs {
		delete(l.halves, h.id)
	}
}
