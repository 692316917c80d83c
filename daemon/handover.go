package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The hand-over upgrade: on request (SIGUSR2) tlsd starts the binary at the path it was
// started from, with every listening socket, and waits for it to say it serves; only then
// does this process stop accepting and drain. The sockets never close, so no connection
// is refused. The new process learns which descriptor is which socket from its
// environment, and says it is ready by writing to a pipe.
const (
	envListenFDs = "TLSD_LISTEN_FDS" // name=fd,name=fd...
	envReadyFD   = "TLSD_READY_FD"
	envAgents    = "TLSD_EXPECT_AGENTS" // an edge's agents, to wait for before serving
	// DefaultUpgradeTimeout bounds the wait for a new process to serve.
	DefaultUpgradeTimeout = 30 * time.Second
)

// Names of the inherited sockets besides the endpoints' listeners, which go by address.
const (
	socketAdmin  = "admin"
	socketTunnel = "tunnel"
)

// Inherited are the sockets a previous tlsd process handed to this one, and those a
// service manager passed (systemd socket activation: LISTEN_FDS), which go by the address
// they are bound to.
type Inherited struct {
	files     map[string]*os.File
	activated []net.Listener
	ready     *os.File // nil when nothing waits for readiness
	// agents are the agents the previous edge process told to connect to this one; it
	// serves once they have (or a bound passes), or their endpoints would find none.
	agents []string
}

// InheritedFromEnv takes the sockets the environment says this process inherited (none
// when started afresh) and removes the variables, so a later upgrade starts clean.
func InheritedFromEnv() (*Inherited, error) {
	in := &Inherited{files: map[string]*os.File{}}
	if spec := os.Getenv(envListenFDs); spec != "" {
		for _, item := range strings.Split(spec, ",") {
			name, fdText, ok := strings.Cut(item, "=")
			fd, err := strconv.Atoi(fdText)
			if !ok || err != nil || fd < 3 {
				return nil, fmt.Errorf("%s: bad entry %q", envListenFDs, item)
			}
			in.files[name] = os.NewFile(uintptr(fd), "inherited "+name)
		}
	}
	if fdText := os.Getenv(envReadyFD); fdText != "" {
		fd, err := strconv.Atoi(fdText)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("%s: bad descriptor %q", envReadyFD, fdText)
		}
		in.ready = os.NewFile(uintptr(fd), "readiness pipe")
	}
	if err := in.takeActivated(); err != nil {
		return nil, err
	}
	if names := os.Getenv(envAgents); names != "" {
		in.agents = strings.Split(names, ",")
	}
	for _, v := range []string{envListenFDs, envReadyFD, envAgents, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	return in, nil
}

// takeActivated takes the sockets systemd passed this process (sd_listen_fds(3): from
// descriptor 3 on, when LISTEN_PID names this process).
func (in *Inherited) takeActivated() error {
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	for fd := 3; fd < 3+n; fd++ {
		f := os.NewFile(uintptr(fd), "activated socket")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("socket activation: descriptor %d is not a listening socket: %w", fd, err)
		}
		in.activated = append(in.activated, ln)
	}
	return nil
}

// activatedFor takes the activated socket bound to addr, if there is one.
func (in *Inherited) activatedFor(addr string) (net.Listener, bool) {
	for i, ln := range in.activated {
		if boundTo(addr, ln.Addr()) {
			in.activated = slices.Delete(in.activated, i, i+1)
			return ln, true
		}
	}
	return nil, false
}

// boundTo reports whether a listener on bound serves the configured address addr: the
// same port, and the same IP or, for ":443" and the like, any.
func boundTo(addr string, bound net.Addr) bool {
	host, port, err := net.SplitHostPort(addr)
	tcp, ok := bound.(*net.TCPAddr)
	if err != nil || !ok || port != strconv.Itoa(tcp.Port) {
		return false
	}
	if host == "" {
		return tcp.IP.IsUnspecified()
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.Equal(tcp.IP) || host == "localhost" && tcp.IP.IsLoopback()
}

// listener turns the inherited socket called name into a listener, once.
func (in *Inherited) listener(name string) (net.Listener, bool) {
	if in == nil {
		return nil, false
	}
	f, ok := in.files[name]
	if !ok {
		return in.activatedFor(name)
	}
	delete(in.files, name)
	ln, err := net.FileListener(f)
	f.Close() // FileListener made its own descriptor
	return ln, err == nil
}

// bind is Options.Bind for a process that inherited sockets: an inherited one for its
// address, else a new one.
func (in *Inherited) bind(next func(context.Context, string) (net.Listener, error)) func(context.Context, string) (net.Listener, error) {
	return func(ctx context.Context, addr string) (net.Listener, error) {
		if ln, ok := in.listener(addr); ok {
			return ln, nil
		}
		return next(ctx, addr)
	}
}

// Ready tells the process that handed the sockets over that this one serves.
func (in *Inherited) Ready() {
	if in == nil || in.ready == nil {
		return
	}
	in.ready.Write([]byte("ready\n"))
	in.ready.Close()
	in.ready = nil
}

// closeUnused closes inherited sockets the configuration no longer wants, and says so
// of those a service manager passed.
func (in *Inherited) closeUnused(log *slog.Logger) {
	if in == nil {
		return
	}
	for name, f := range in.files {
		f.Close()
		delete(in.files, name)
	}
	for _, ln := range in.activated {
		log.Warn("socket activation: no listener of the configuration is bound to this socket; closing it", "address", ln.Addr().String())
		ln.Close()
	}
	in.activated = nil
}

// handOver starts the new process with sockets (name -> listener) and waits until it
// serves, it fails, or timeout passes; on failure the new process is stopped and this
// one keeps everything. It returns the new process's PID.
func handOver(exe string, args, env []string, sockets map[string]net.Listener, timeout time.Duration, log *slog.Logger) (int, error) {
	files, spec, err := socketFiles(sockets)
	defer closeFiles(files)
	if err != nil {
		return 0, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	env = append(append(os.Environ(), env...), envListenFDs+"="+spec, envReadyFD+"="+strconv.Itoa(3+len(files)))
	proc, err := startWith(exe, args, env, append(files, readyW))
	readyW.Close() // the child has its own
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	log.Info("upgrade: started the new process; waiting for it to serve", "pid", proc.Pid, "binary", exe)
	if err := waitReady(proc, readyR, timeout); err != nil {
		proc.Kill()
		return 0, err
	}
	go proc.Wait() // reap it if it ends before this process does
	return proc.Pid, nil
}

// startWith starts exe with this process's standard output and error and extra as
// descriptors 3 and on. It passes the raw descriptors: os/exec would take each through
// File.Fd, which puts a descriptor in blocking mode, and a listener's copy shares that
// mode with the listener itself. This process's accept would then block in the kernel,
// and closing the listener after the hand-over would wait for a connection that may
// never come (seen: the HTTP listener, which gets few).
func startWith(exe string, args, env []string, extra []*os.File) (*os.Process, error) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	fds := make([]uintptr, 0, 3+len(extra))
	for _, f := range append([]*os.File{devNull, os.Stdout, os.Stderr}, extra...) {
		fd, err := rawFd(f)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	pid, _, err := syscall.StartProcess(exe, append([]string{exe}, args...), &syscall.ProcAttr{Env: env, Files: fds})
	runtime.KeepAlive(extra) // open until the child has its copies
	if err != nil {
		return nil, err
	}
	return os.FindProcess(pid)
}

// rawFd is f's descriptor, leaving its blocking mode as it is (unlike File.Fd).
func rawFd(f *os.File) (uintptr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var fd uintptr
	if err := rc.Control(func(d uintptr) { fd = d }); err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return fd, nil
}

// waitReady waits for the child's word on the pipe; its exit or the timeout comes first
// on failure.
func waitReady(proc *os.Process, ready *os.File, timeout time.Duration) error {
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		n, err := ready.Read(buf)
		if n > 0 {
			err = nil
		} else if err == nil {
			err = errors.New("empty readiness message")
		}
		got <- err
	}()
	ready.SetReadDeadline(time.Now().Add(timeout))
	if err := <-got; err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the new process did not serve within %s", timeout)
		}
		state, _ := proc.Wait()
		return fmt.Errorf("the new process ended before serving (%v)", state)
	}
	return nil
}

// socketFiles duplicates each listener's descriptor for the child, in a fixed order.
func socketFiles(sockets map[string]net.Listener) ([]*os.File, string, error) {
	names := make([]string, 0, len(sockets))
	for name := range sockets {
		names = append(names, name)
	}
	slices.Sort(names)
	var files []*os.File
	var spec []string
	for _, name := range names {
		fl, ok := sockets[name].(interface{ File() (*os.File, error) })
		if !ok {
			return files, "", fmt.Errorf("listener %s cannot be handed over", name)
		}
		f, err := fl.File()
		if err != nil {
			return files, "", fmt.Errorf("listener %s: %w", name, err)
		}
		spec = append(spec, fmt.Sprintf("%s=%d", name, 3+len(files)))
		files = append(files, f)
	}
	return files, strings.Join(spec, ","), nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
