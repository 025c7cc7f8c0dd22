package clustertest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hazards of the load balancer itself: what it does when instances crash
// in quick succession or freeze. Readers run through the load balancer
// during the fault; a read is idempotent, so the load balancer may resend
// it to another instance, and none may fail while at least one instance
// can answer.

// reads runs GET /api/instance from n clients until stop is closed (at most
// maxReads in all) and records every request: when it started, how long it
// took, and what it got.
type reads struct {
	mu    sync.Mutex
	began time.Time
	got   []read
	wg    sync.WaitGroup
	stop  chan struct{}
}

type read struct {
	start, took time.Duration // since reads.began
	status      int           // 0: no answer (err)
	instance    string
	err         error
}

func (c *cluster) startReads(n int) *reads {
	const maxReads = 50000
	rs := &reads{began: time.Now(), stop: make(chan struct{})}
	for range n {
		rs.wg.Go(func() {
			for {
				select {
				case <-rs.stop:
					return
				default:
				}
				t0 := time.Now()
				r, err := c.do("GET", "/api/instance", nil, nil)
				rs.mu.Lock()
				rs.got = append(rs.got, read{start: t0.Sub(rs.began), took: time.Since(t0), status: r.status, instance: r.instance, err: err})
				full := len(rs.got) >= maxReads
				rs.mu.Unlock()
				if full {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return rs
}

// end stops the clients and returns every read.
func (rs *reads) end() []read {
	close(rs.stop)
	rs.wg.Wait()
	return rs.got
}

func (r read) failed() bool { return r.err != nil || r.status != http.StatusOK }

func (r read) String() string {
	if r.err != nil {
		return fmt.Sprintf("at %v, after %v: %v", r.start.Round(time.Millisecond), r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("at %v, after %v: %d from %q", r.start.Round(time.Millisecond), r.took.Round(time.Millisecond), r.status, r.instance)
}

// Hazard: a load balancer that keeps an instance out of rotation for a
// while after one failed connection (nginx's max_fails and fail_timeout)
// can end with every instance marked down while all of them are up: three
// crashes in a few seconds become a total outage made by the load balancer
// alone. Every instance is killed (SIGKILL) and restarted at once, one
// after another, as fast as they come back, while readers run; no read may
// fail, and once all are back every request is answered at once.
func TestLBCrashBurst(t *testing.T) {
	c := startCluster(t, nil)
	if len(c.apps) < 2 {
		t.Skip("one instance: a crash is an outage whatever the load balancer does")
	}
	rs := c.startReads(8)
	time.Sleep(500 * time.Millisecond)
	burst := time.Now()
	for _, a := range c.apps {
		a.kill()
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitReadyEvery(30*time.Second, 10*time.Millisecond); err != nil {
			t.Fatalf("%v\n%s", err, a.tail(40))
		}
	}
	took := time.Since(burst)
	// At once: every instance answers directly, so every request through
	// the load balancer must be answered too.
	var after []string
	for i := 0; i < 10*len(c.apps); i++ {
		if r, err := c.do("GET", "/api/instance", nil, nil); err != nil {
			after = append(after, err.Error())
		} else if r.status != http.StatusOK {
			after = append(after, r.String())
		}
	}
	time.Sleep(500 * time.Millisecond)
	got := rs.end()

	var failed []string
	for _, r := range got {
		if r.failed() {
			failed = append(failed, r.String())
		}
	}
	record(fmt.Sprintf("crash burst (%s): %d kills in", c.lbKind, len(c.apps)), took.Round(time.Millisecond))
	record(fmt.Sprintf("crash burst (%s): reads failed", c.lbKind), fmt.Sprintf("%d of %d", len(failed), len(got)))
	t.Logf("%d instances killed and back within %v; %d of %d reads through %s failed",
		len(c.apps), took.Round(time.Millisecond), len(failed), len(got), c.lbKind)
	if len(failed) > 0 {
		t.Errorf("%d of %d reads failed during the crash burst; the first:\n%s", len(failed), len(got), strings.Join(first(failed, 10), "\n"))
	}
	if len(after) > 0 {
		t.Errorf("with every instance back and ready, %d of %d requests through %s failed:\n%s",
			len(after), 10*len(c.apps), c.lbKind, strings.Join(first(after, 10), "\n"))
	}
}

// Hazard: a frozen instance (SIGSTOP: a stop-the-world pause, a VM
// migrated, a process swapped out) accepts connections - the kernel
// completes the handshake - and answers nothing. A load balancer that waits
// for it as long as for any slow request hangs a share of all requests for
// the whole pause. The instance is frozen for longer than the load
// balancer's read timeout twice over; reads must fail over to another
// instance (none fails, none waits much longer than that timeout), and the
// instance must leave rotation: after the first few seconds no read waits
// on it any more.
func TestLBFrozenInstance(t *testing.T) {
	c := startCluster(t, nil)
	if len(c.apps) < 2 {
		t.Skip("one instance: a frozen instance is an outage whatever the load balancer does")
	}
	const (
		pause = 12 * time.Second
		// The load balancer gives up on an instance that sends nothing for
		// this long and resends a read elsewhere (proxy_read_timeout /
		// timeout server of the API routes in the deploy config).
		readTimeout = 3 * time.Second
		// By then the frozen instance is out of rotation.
		leaveBy = 2*readTimeout + 2*time.Second
	)
	a := c.apps[0]
	rs := c.startReads(8)
	time.Sleep(500 * time.Millisecond)
	frozeAt := time.Since(rs.began)
	if err := a.sendSignal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer a.sendSignal(syscall.SIGCONT)
	time.Sleep(pause)
	if err := a.sendSignal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawAt := time.Since(rs.began)
	time.Sleep(time.Second)
	got := rs.end()

	var failed, tooSlow, lateSlow []string
	var longest time.Duration
	for _, r := range got {
		if r.start < frozeAt || r.start > thawAt {
			continue
		}
		longest = max(longest, r.took)
		switch {
		case r.failed():
			failed = append(failed, r.String())
		case r.took > readTimeout+2*time.Second:
			tooSlow = append(tooSlow, r.String())
		case r.took > time.Second && r.start > frozeAt+leaveBy && r.start+r.took < thawAt:
			lateSlow = append(lateSlow, r.String())
		}
	}
	record(fmt.Sprintf("frozen instance (%s): longest read", c.lbKind), longest.Round(time.Millisecond))
	record(fmt.Sprintf("frozen instance (%s): slow reads after %v", c.lbKind, leaveBy), len(lateSlow))
	t.Logf("%s frozen for %v behind %s: %d reads, %d failed, longest %v, %d slow after the first %v",
		a.name, pause, c.lbKind, len(got), len(failed), longest.Round(time.Millisecond), len(lateSlow), leaveBy)
	if len(failed) > 0 {
		t.Errorf("%d reads failed while %s was frozen (a read must go to another instance):\n%s", len(failed), a.name, strings.Join(first(failed, 10), "\n"))
	}
	if len(tooSlow) > 0 {
		t.Errorf("%d reads waited longer than the read timeout (%v) and a retry while %s was frozen:\n%s", len(tooSlow), readTimeout, a.name, strings.Join(first(tooSlow, 10), "\n"))
	}
	if len(lateSlow) > 0 {
		t.Errorf("%s still got requests more than %v after it froze:\n%s", a.name, leaveBy, strings.Join(first(lateSlow, 10), "\n"))
	}
}

// first returns the first n of s (all if fewer).
func first(s []string, n int) []string { return s[:min(n, len(s))] }
