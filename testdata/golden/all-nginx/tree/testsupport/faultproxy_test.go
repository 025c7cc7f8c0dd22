package testsupport_test

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// echoServer echoes every connection and counts the bytes it received.
func echoServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var got atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &got
}

// roundTrip writes msg and reads it back within wait; "" when nothing came.
func roundTrip(t *testing.T, c net.Conn, msg string, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readFor(t, c, len(msg), wait)
}

func readFor(t *testing.T, c net.Conn, n int, wait time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, n)
	got, err := io.ReadFull(c, buf)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:got])
}

func TestFaultProxy(t *testing.T) {
	target, received := echoServer(t)
	p := testsupport.NewFaultProxy(t, target)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := roundTrip(t, c, "pass", time.Second); got != "pass" {
		t.Fatalf("pass: got %q", got)
	}

	// Blackhole: nothing either way, the connection stays open; what was
	// held is delivered after the heal.
	p.Set(testsupport.Blackhole)
	before := received.Load()
	if got := roundTrip(t, c, "hole", 200*time.Millisecond); got != "" {
		t.Fatalf("blackhole: got %q", got)
	}
	if received.Load() != before {
		t.Fatalf("blackhole: the target received bytes")
	}
	p.Heal()
	if got := readFor(t, c, 4, time.Second); got != "hole" {
		t.Fatalf("after heal: got %q", got)
	}

	// One way to the target: the target receives, the answer is held.
	p.Set(testsupport.DropToClient)
	before = received.Load()
	if got := roundTrip(t, c, "half", 200*time.Millisecond); got != "" {
		t.Fatalf("drop-to-client: got %q", got)
	}
	if received.Load() != before+4 {
		t.Fatalf("drop-to-client: target received %d bytes, want 4", received.Load()-before)
	}
	p.Heal()
	if got := readFor(t, c, 4, time.Second); got != "half" {
		t.Fatalf("after heal: got %q", got)
	}

	// The other way: the target receives nothing.
	p.Set(testsupport.DropToTarget)
	before = received.Load()
	if got := roundTrip(t, c, "side", 200*time.Millisecond); got != "" || received.Load() != before {
		t.Fatalf("drop-to-target: got %q, target received %d bytes", got, received.Load()-before)
	}
	p.Heal()
	if got := readFor(t, c, 4, time.Second); got != "side" {
		t.Fatalf("after heal: got %q", got)
	}

	// Latency.
	p.Latency(150 * time.Millisecond)
	began := time.Now()
	if got := roundTrip(t, c, "slow", 2*time.Second); got != "slow" || time.Since(began) < 300*time.Millisecond {
		t.Fatalf("latency: got %q after %v, want it after 2x150ms", got, time.Since(began))
	}
	p.Heal()

	// Reset: the connection is gone with an RST; a new one works.
	p.Reset()
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after reset: %v, want a closed connection", err)
	}
	c2, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := roundTrip(t, c2, "anew", time.Second); got != "anew" {
		t.Fatalf("after reset: got %q", got)
	}
}

// Abandon: the target's side ends, the client's side stays open and silent
// (no EOF, no reset), and a new connection works.
func TestFaultProxyAbandon(t *testing.T) {
	target, _ := echoServer(t)
	p := testsupport.NewFaultProxy(t, target)
	old, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if got := roundTrip(t, old, "ping", time.Second); got != "ping" {
		t.Fatalf("before Abandon: %q", got)
	}
	p.Abandon()
	if got := roundTrip(t, old, "lost", 300*time.Millisecond); got != "" {
		t.Fatalf("an abandoned connection carried %q", got)
	}
	// readFor fails the test on EOF or a reset: the client must not learn.
	if got := readFor(t, old, 1, 300*time.Millisecond); got != "" {
		t.Fatalf("an abandoned connection carried %q", got)
	}
	fresh, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got := roundTrip(t, fresh, "new", time.Second); got != "new" {
		t.Fatalf("a new connection after Abandon: %q", got)
	}
}
