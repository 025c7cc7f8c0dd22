package testsupport

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Fault is what a FaultProxy does to the bytes it forwards.
type Fault int

const (
	// Pass forwards both ways.
	Pass Fault = iota
	// Blackhole forwards nothing, either way, and closes nothing: both
	// ends see a connection that is open and silent (a partition, a
	// half-open link). New connections are accepted and held too.
	Blackhole
	// DropToTarget forwards nothing from the client to the target; the
	// target's answers still reach the client (a one-way partition).
	DropToTarget
	// DropToClient forwards nothing from the target to the client; what
	// the client sends still reaches the target (a one-way partition).
	DropToClient
)

func (f Fault) String() string {
	return [...]string{"pass", "blackhole", "drop-to-target", "drop-to-client"}[f]
}

// FaultProxy is a TCP proxy on a loopback port in front of one target, for
// injecting network faults between one client and one server: give the
// client Addr instead of the target's address, then Set a fault, Reset the
// connections or add Latency while the test runs.
//
// Bytes a fault keeps from being forwarded are held, not discarded: they
// are delivered when the direction is open again, as TCP delivers what it
// retransmits once a partition heals (unless an end gave up and closed
// first). Held bytes stay in the kernel's socket buffers, so the sender
// blocks once those are full, as it would on a real partition.
type FaultProxy struct {
	Addr   string // 127.0.0.1:port, what clients dial
	target string
	ln     net.Listener

	mu      sync.Mutex
	fault   Fault
	latency time.Duration
	changed chan struct{} // closed and replaced on every change
	conns   map[*net.TCPConn]struct{}
	pairs   map[*net.TCPConn]*net.TCPConn // client side -> target side
	dead    map[*net.TCPConn]bool         // abandoned client sides, kept open until Close
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewFaultProxy starts a proxy to target (host:port) that passes
// everything; it is closed when the test ends.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	// A port from FreePort, not ":0": the kernel could hand ":0" a port
	// that FreePort already gave a server which has not bound it yet.
	ln, err := net.Listen("tcp", loopback(FreePort(t)))
	if err != nil {
		t.Fatalf("fault proxy to %s: %v", target, err)
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln,
		changed: make(chan struct{}), conns: map[*net.TCPConn]struct{}{},
		pairs: map[*net.TCPConn]*net.TCPConn{}, dead: map[*net.TCPConn]bool{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Set switches the fault for current and new connections.
func (p *FaultProxy) Set(f Fault) { p.update(func() { p.fault = f }) }

// Latency delays every chunk of bytes forwarded, both ways, by d.
func (p *FaultProxy) Latency(d time.Duration) { p.update(func() { p.latency = d }) }

// Heal is Set(Pass) and Latency(0).
func (p *FaultProxy) Heal() { p.update(func() { p.fault, p.latency = Pass, 0 }) }

// Reset closes every current connection with a TCP RST (SO_LINGER 0) on
// both sides, as when a middlebox or a restarted peer drops them. New
// connections are accepted as before.
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.SetLinger(0)
		_ = c.Close()
		delete(p.conns, c)
		delete(p.dead, c)
	}
}

// Abandon closes the target's side of every current connection and leaves
// the client's side open and silent until the proxy closes: the target
// sees the connection end, the client does not (a NAT or firewall dropped
// the flow, a half-open connection). New connections are forwarded as
// before.
func (p *FaultProxy) Abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for client, upstream := range p.pairs {
		p.dead[client] = true
		delete(p.pairs, client)
		delete(p.conns, upstream)
		_ = upstream.Close()
	}
}

// Conns is the number of open connections, both sides counted.
func (p *FaultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes every connection.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *FaultProxy) update(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *FaultProxy) track(c *net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack closes c, unless it is an abandoned client side.
func (p *FaultProxy) untrack(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pairs, c)
	if p.dead[c] {
		return
	}
	delete(p.conns, c)
	c.Close()
}

// shut closes c (or its writing half) unless it is an abandoned client
// side, which stays open and silent.
func (p *FaultProxy) shut(c *net.TCPConn, writeOnly bool) {
	p.mu.Lock()
	dead := p.dead[c]
	p.mu.Unlock()
	switch {
	case dead:
	case writeOnly:
		_ = c.CloseWrite()
	default:
		_ = c.Close()
	}
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		client := c.(*net.TCPConn)
		if !p.track(client) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second}
			u, err := d.Dial("tcp", p.target)
			if err != nil {
				// Refused like the target would refuse.
				_ = client.SetLinger(0)
				p.untrack(client)
				return
			}
			upstream := u.(*net.TCPConn)
			if !p.track(upstream) {
				p.untrack(client)
				return
			}
			p.mu.Lock()
			p.pairs[client] = upstream
			p.mu.Unlock()
			var both sync.WaitGroup
			both.Add(2)
			go func() { defer both.Done(); p.copy(upstream, client, DropToTarget) }()
			go func() { defer both.Done(); p.copy(client, upstream, DropToClient) }()
			both.Wait()
			p.untrack(client)
			p.untrack(upstream)
		}()
	}
}

// copy forwards src to dst, holding each chunk while a fault blocks this
// direction (Blackhole or drop).
func (p *FaultProxy) copy(dst, src *net.TCPConn, drop Fault) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				p.mu.Lock()
				blocked := p.fault == Blackhole || p.fault == drop
				latency, changed := p.latency, p.changed
				p.mu.Unlock()
				if !blocked {
					if latency > 0 {
						select {
						case <-time.After(latency):
						case <-p.done:
							return
						}
					}
					break
				}
				select {
				case <-changed:
				case <-p.done:
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.shut(src, false)
				return
			}
		}
		if err != nil {
			p.shut(dst, errors.Is(err, io.EOF)) // pass a half-close on as one
			return
		}
	}
}
