package relay

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceCopy moves bytes from src to dst through a kernel pipe with splice(2), like
// io.Copy between two *net.TCPConn, but holds a pipe only while bytes are in flight.
// Go's own splice path keeps its pipe (two descriptors, and a 64 KiB kernel buffer once
// used) for as long as the copy blocks, so every idle passthrough connection would hold
// two pipes: four descriptors on top of its two sockets, which caps a 20,000-descriptor
// process at about 3,300 open connections. Here an idle connection holds only its
// sockets and goroutines; the pipe goes back to a shared pool after each burst.
func spliceCopy(dst, src *net.TCPConn) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		if err := waitReadable(srcRC); err != nil {
			return total, err
		}
		p, err := pipes.get()
		if err != nil {
			return total, err
		}
		// Keep the pipe while bytes keep coming; give it back when src runs dry.
		for {
			n, err := spliceIn(srcRC, p)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err == nil && n == 0 {
				pipes.put(p)
				return total, nil // EOF
			}
			if err == nil {
				err = wrote(spliceOut(dstRC, p, n))
			}
			if err != nil {
				p.close() // it may hold bytes that belong to nobody now
				return total, err
			}
			total += int64(n)
		}
		pipes.put(p)
	}
}

// waitReadable returns once src has data or an EOF, consuming nothing, or the error the
// socket has to report (a reset: a peek reports it once and clears it, so it must not
// be dropped here).
func waitReadable(rc syscall.RawConn) error {
	var one [1]byte
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			_, _, rerr = unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if !errors.Is(rerr, unix.EINTR) {
				return !errors.Is(rerr, unix.EAGAIN)
			}
		}
	})
	if err != nil {
		return err
	}
	return rerr
}

// spliceChunk is what a pipe holds: one splice moves up to this much. 256 KiB pipes
// cut the CPU per GB of passthrough by about a fifth against the default 64 KiB
// (bench: passthrough bulk, 8 conns). The kernel counts a pipe's capacity against a
// per-user budget (fs.pipe-user-pages-soft, 64 MiB by default), so the pool keeps few.
const spliceChunk = 256 << 10

// spliceIn moves what src has into the pipe without waiting: EAGAIN means nothing now.
func spliceIn(rc syscall.RawConn, p *pipe) (int, error) {
	var n int
	var serr error
	err := rc.Read(func(fd uintptr) bool {
		var m int64
		m, serr = unix.Splice(int(fd), nil, p.w, nil, spliceChunk, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		n = int(m)
		return true
	})
	if err != nil {
		return n, err
	}
	return n, serr
}

func spliceOut(rc syscall.RawConn, p *pipe, n int) error {
	for n > 0 {
		var serr error
		err := rc.Write(func(fd uintptr) bool {
			var m int64
			m, serr = unix.Splice(p.r, nil, int(fd), nil, n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if m > 0 {
				n -= int(m)
			}
			return !errors.Is(serr, unix.EAGAIN)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
	return nil
}

type pipe struct{ r, w int }

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool keeps empty pipes for reuse; bursts on many connections at once create more,
// and those beyond the pool's capacity are closed when returned.
type pipePool struct{ free chan *pipe }

var pipes = pipePool{free: make(chan *pipe, 64)}

func (pp pipePool) get() (*pipe, error) {
	select {
	case p := <-pp.free:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, spliceChunk) // over budget: the default size stays
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// ReleaseIdlePipes closes the pipes kept for reuse, so that a test counting descriptors
// sees only those of open connections.
func ReleaseIdlePipes() {
	for {
		select {
		case p := <-pipes.free:
			p.close()
		default:
			return
		}
	}
}

func (pp pipePool) put(p *pipe) {
	select {
	case pp.free <- p:
	default:
		p.close()
	}
}
