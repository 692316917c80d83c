package watch

import (
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// writers knows which files in the watched directories are open for writing: a file
// written to since the last time a writer closed it. Linux's inotify reports the close
// (IN_CLOSE_WRITE); fsnotify does not pass it on, so this watches the same directories
// with inotify directly, for that alone.
type writers struct {
	file   *os.File      // the inotify descriptor, read through the runtime's poller
	closed chan struct{} // a writer closed a file: takeClosed says which
	done   chan struct{} // the read loop ended

	mu          sync.Mutex // guards the following fields
	wds         map[int32]string
	dirs        map[string]int32
	open        map[string]time.Time // path -> first write since its last close
	closedFiles []string             // closed since the last takeClosed, up to maxClosed
	lost        bool                 // more were closed than closedFiles holds
}

// maxClosed bounds the closes remembered between two looks; past it any close counts.
const maxClosed = 1024

func (w *writers) noteClosedLocked(path string) {
	if len(w.closedFiles) < maxClosed {
		w.closedFiles = append(w.closedFiles, path)
	} else {
		w.lost = true
	}
}

const writerEvents = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE

func newWriters() (*writers, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	w := &writers{file: os.NewFile(uintptr(fd), "inotify"), closed: make(chan struct{}, 1), done: make(chan struct{}),
		wds: map[int32]string{}, dirs: map[string]int32{}, open: map[string]time.Time{}}
	go w.run()
	return w, nil
}

// watch starts following writes in dir (again, if its directory was replaced).
func (w *writers) watch(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := w.addWatch(dir)
	if err != nil {
		return os.NewSyscallError("inotify_add_watch", err)
	}
	w.wds[int32(wd)], w.dirs[dir] = dir, int32(wd)
	return nil
}

func (w *writers) addWatch(dir string) (int, error) {
	raw, err := w.file.SyscallConn()
	if err != nil {
		return 0, err
	}
	var wd int
	var werr error
	err = raw.Control(func(fd uintptr) { wd, werr = unix.InotifyAddWatch(int(fd), dir, writerEvents) })
	return wd, errors.Join(err, werr)
}

// unwatch stops following dir.
func (w *writers) unwatch(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.dirs[dir]
	if !ok {
		return
	}
	delete(w.dirs, dir)
	delete(w.wds, wd)
	if raw, err := w.file.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.InotifyRmWatch(int(fd), uint32(wd)) })
	}
}

// openFiles lists the files open for writing, each with the time of its first write.
func (w *writers) openFiles() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.open)
}

func (w *writers) close() error {
	err := w.file.Close()
	<-w.done
	return err
}

// run reads events until the descriptor closes.
func (w *writers) run() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		w.handle(buf[:n])
	}
}

// handle applies one read's worth of events.
func (w *writers) handle(buf []byte) {
	now := time.Now()
	closedOne := false
	w.mu.Lock()
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(buf[0:]))
		mask := binary.NativeEndian.Uint32(buf[4:])
		size := int(binary.NativeEndian.Uint32(buf[12:]))
		name := trimNUL(buf[unix.SizeofInotifyEvent:min(len(buf), unix.SizeofInotifyEvent+size)])
		buf = buf[min(len(buf), unix.SizeofInotifyEvent+size):]
		closedOne = w.applyLocked(wd, mask, name, now) || closedOne
	}
	w.mu.Unlock()
	if closedOne {
		select {
		case w.closed <- struct{}{}:
		default:
		}
	}
}

// applyLocked records one event and says whether a writer closed a file.
func (w *writers) applyLocked(wd int32, mask uint32, name string, now time.Time) bool {
	switch {
	case mask&unix.IN_Q_OVERFLOW != 0:
		clear(w.open) // events were lost: assume nobody is writing rather than wait
		w.lost = true
		return true
	case mask&unix.IN_IGNORED != 0:
		if dir, ok := w.wds[wd]; ok && w.dirs[dir] == wd {
			delete(w.dirs, dir)
		}
		delete(w.wds, wd)
		return false
	}
	dir, ok := w.wds[wd]
	if !ok || name == "" {
		return false
	}
	path := filepath.Join(dir, name)
	if mask&unix.IN_MODIFY != 0 {
		if _, writing := w.open[path]; !writing {
			w.open[path] = now
		}
		return false
	}
	// Closed, renamed into place or away, deleted: no writer is in the middle of it.
	_, was := w.open[path]
	delete(w.open, path)
	if was || mask&unix.IN_CLOSE_WRITE != 0 {
		w.noteClosedLocked(path)
		return true
	}
	return false
}

// takeClosed returns the files closed by a writer since it was last called; lost says
// some were not remembered (or events were lost), so any of them may matter.
func (w *writers) takeClosed() (paths []string, lost bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	paths, lost = w.closedFiles, w.lost
	w.closedFiles, w.lost = nil, false
	return paths, lost
}

func trimNUL(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
