package daemon

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHandOverKeepsListenersNonBlocking: starting the new process must not put the
// listeners' shared descriptors in blocking mode (os/exec does, through File.Fd): this
// process's accept would then block in the kernel and its shutdown after the hand-over
// would hang on a listener that gets no more connections. The child here never resets
// the mode, as a new tlsd would, so a regression shows for certain.
func TestHandOverKeepsListenersNonBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	files, _, err := socketFiles(map[string]net.Listener{"a": ln})
	defer closeFiles(files)
	must(t, err)
	proc, err := startWith("/bin/sh", []string{"-c", "exit 0"}, os.Environ(), files)
	must(t, err)
	if _, err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	rc, err := ln.(*net.TCPListener).SyscallConn()
	must(t, err)
	var flags int
	must(t, rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) }))
	must(t, err)
	if flags&unix.O_NONBLOCK == 0 {
		t.Error("the listener is in blocking mode after the new process started")
	}
}
