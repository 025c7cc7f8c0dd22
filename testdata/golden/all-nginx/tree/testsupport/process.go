package testsupport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a server process started for tests. URL and Addr stay the same
// across Stop/Start, so clients configured once keep working after a restart.
// A Server may be copied; copies control the same process.
type Server struct {
	URL  string // how clients connect, e.g. redis://127.0.0.1:6379/0
	Addr string // host:port the server listens on

	*control
}

// control is what Stop, Kill and Start need.
type control struct {
	name     string // for messages: "redis", "minio", ...
	external string // env var naming an external server we cannot control, if any
	command  func() *exec.Cmd
	ready    func(ctx context.Context) error
	stopSig  syscall.Signal // graceful stop signal
	timeout  time.Duration  // start timeout, readiness included
	runAs    *ids           // user to run as (postgres when we are root), or nil
	out      *ringBuffer    // output of every run, so a restart keeps the history

	mu   sync.Mutex
	proc *process // nil while stopped
}

// Stop stops the server gracefully (SIGTERM) and waits up to 20 s
// for it to exit, then kills it. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.skipIfExternal(t, "Stop")
	if err := s.stop(20 * time.Second); err != nil {
		t.Logf("stop %s: %v", s.name, err)
	}
}

// Kill kills the server and its children with SIGKILL and waits for it to exit.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.skipIfExternal(t, "Kill")
	s.kill()
}

// Signal sends sig to the server and its children (SIGSTOP to freeze it,
// SIGCONT to let it go on); it does nothing when the server is stopped.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.skipIfExternal(t, "signal")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if err := signalGroup(s.proc.cmd.Process.Pid, sig); err != nil {
			t.Logf("signal %s: %v", s.name, err)
		}
	}
}

// Start restarts a stopped server on the same address and data directory and
// waits until it answers.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.skipIfExternal(t, "Start")
	if err := s.start(s.Addr); err != nil {
		t.Fatalf("%v\n%s", err, s.tail(8<<10))
	}
}

func (s *control) skipIfExternal(t testing.TB, what string) {
	t.Helper()
	if s.external != "" {
		t.Skipf("cannot %s %s: it is an external server (%s is set)", what, s.name, s.external)
	}
}

var (
	errAddrInUse = errors.New("already in use by another process")
	errEarlyExit = errors.New("exited before it was ready")
)

// portLost reports whether a start failed in the way losing the race for a
// free port looks like, so that trying another port makes sense.
func portLost(err error) bool {
	return errors.Is(err, errAddrInUse) || errors.Is(err, errEarlyExit)
}

// process is one run of a server's command.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of Wait, valid once done is closed
}

// start runs the command and waits until ready answers, the process exits, or
// the start timeout passes. On failure the process is killed.
func (s *control) start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("start %s: already running", s.name)
	}
	// If something already answers on the address, readiness would pass
	// for the wrong server while ours fails to bind.
	if tcpReady(addr)(context.Background()) == nil {
		return fmt.Errorf("start %s: %s: %w", s.name, addr, errAddrInUse)
	}
	cmd := s.command()
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	cmd.SysProcAttr = sysProcAttr(s.runAs)
	// Children that inherit the output pipe (postgres backends, for example)
	// must not keep Wait blocked forever after the server itself exited.
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(s.out, "--- testsupport: starting %s\n", strings.Join(cmd.Args, " "))
	began := time.Now()
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.ready(ctx)
		if err == nil {
			fmt.Fprintf(s.out, "--- testsupport: %s ready on %s after %v\n", s.name, addr, time.Since(began).Round(time.Millisecond))
			return nil
		}
		select {
		case <-p.done:
			s.proc = nil
			return fmt.Errorf("start %s: %w (%v); last readiness error: %v", s.name, errEarlyExit, p.err, err)
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("start %s: not ready on %s after %v: %v", s.name, addr, s.timeout, err)
		case <-tick.C:
		}
	}
}

// stop sends the graceful stop signal, waits up to grace, then kills.
func (s *control) stop(grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	if err := signalGroup(p.cmd.Process.Pid, s.stopSig); err != nil {
		s.killLocked()
		return nil
	}
	select {
	case <-p.done:
		s.proc = nil
		return nil
	case <-time.After(grace):
		s.killLocked()
		return fmt.Errorf("did not exit within %v of %v; killed it", grace, s.stopSig)
	}
}

func (s *control) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// killLocked kills the whole process group: nginx workers or postgres
// backends must not outlive their parent and keep the port busy.
func (s *control) killLocked() {
	p := s.proc
	if p == nil {
		return
	}
	_ = signalGroup(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	s.proc = nil
}

func (s *control) tail(n int) string {
	return fmt.Sprintf("--- %s output (last %d bytes at most) ---\n%s", s.name, n, s.out.tail(n))
}

// startPerTest starts a server owned by one test: killed in t.Cleanup (there
// is nothing to save), its output logged when the test failed. newServer
// builds the server for a fresh free port; it is called again when the first
// attempt exits early, which is what losing a race for the port looks like.
func startPerTest(t testing.TB, newServer func(port int) *Server) *Server {
	t.Helper()
	var s *Server
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s = newServer(FreePort(t))
		if err = s.start(s.Addr); !portLost(err) {
			break
		}
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, s.tail(8<<10))
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("%s", s.tail(8<<10))
		}
	})
	return s
}

// spawn starts cmd from one goroutine locked to its OS thread for the life
// of the test binary. Pdeathsig fires when the thread that forked the child
// exits, not the process; the Go runtime may end threads (after a locked
// goroutine exits), which would kill a server in the middle of a test.
func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

// ids is a user to run a child process as.
type ids struct{ uid, gid uint32 }

// ringBuffer keeps the last size bytes written to it: enough to debug a
// failure without holding a chatty server's whole output in memory.
type ringBuffer struct {
	mu   sync.Mutex
	size int
	buf  []byte
}

func newRingBuffer(size int) *ringBuffer { return &ringBuffer{size: size} }

func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - r.size; over > 0 {
		// Compact rarely: only once the buffer holds twice the limit.
		if len(r.buf) > 2*r.size {
			r.buf = append([]byte(nil), r.buf[over:]...)
		}
	}
	return len(p), nil
}

func (r *ringBuffer) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buf
	if n > r.size {
		n = r.size
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago. Another
// process can still take it before the caller binds it; the servers started
// here retry with a new port when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	for range 1000 {
		port, err := candidatePort()
		if err != nil {
			return 0, err
		}
		// Never hand out the same port twice in one test binary: a port
		// just released by a stopped server may come back.
		ports.mu.Lock()
		seen := ports.given[port]
		ports.given[port] = true
		ports.mu.Unlock()
		if !seen {
			return port, nil
		}
	}
	return 0, errors.New("no free port after 1000 tries")
}

// candidatePort is a port that could be bound just now, below the kernel's
// ephemeral range when there is room: a port from that range (what ":0"
// gives) can be taken, before the server that was handed it binds it, by
// the local end of any outgoing connection, and the tests make thousands.
func candidatePort() (int, error) {
	lo := 0
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
		}
	}
	if lo > 20000 {
		for range 100 {
			port := 15000 + rand.IntN(lo-15000)
			if l, err := net.Listen("tcp", loopback(port)); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var ports = struct {
	mu    sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// lookBinary finds a server binary in PATH or in the sbin directories that a
// non-root PATH usually lacks (Debian puts nginx and haproxy in /usr/sbin).
func lookBinary(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// missing skips the test because a server is not available, or fails it
// when CI is set: in CI a skipped integration test must not look like a pass.
func missing(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (CI is set, so this fails instead of skipping); %s", what, hint)
	}
	t.Skipf("%s not found; %s", what, hint)
}

// tcpReady reports whether something accepts TCP connections on addr.
func tcpReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// externalServer describes a server given by URL in an environment variable:
// tests can use it but not stop or start it.
func externalServer(t testing.TB, name, env, rawURL string) *Server {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("%s=%q is not a URL with a host: %v", env, rawURL, err)
	}
	return &Server{URL: rawURL, Addr: u.Host, control: &control{name: name, external: env, out: newRingBuffer(1)}}
}
