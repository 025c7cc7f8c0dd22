package clustertest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// notWritten is in the answer to a write of a note that was refused before
// it committed (503, Retry-After): see httpapi.
const notWritten = "the note was not written; retry"

// Hazard: requests cut off while an instance restarts. Every instance is
// restarted one after another (SIGTERM, wait for it to exit, start it again,
// wait until the load balancer sends it requests) while a client loop sends
// a mix of reads and writes through the load balancer. Not one request may
// fail. What makes it work: the app's drain (readiness 503 for
// SHUTDOWN_DRAIN_DELAY, every answer closing its connection, then Shutdown
// lets in-flight requests finish) and the load balancer's retry of refused
// connections.
//
// A write of a note that the app refused before it committed (503 "not
// written", with Retry-After) is retried once, as a client should, and
// counts as failed only if the retry fails too. The app refuses a write when
// the cache cannot hear from every instance within its bound, which happens
// when the machine has far fewer cores than instances (20 on 2).
//
// One instance cannot restart without an outage. With --replicas 1 the test
// holds it to what it can promise: requests fail only while the instance is
// down, each with the load balancer's 502 or 503 at once, not a hang or a
// reset; every request after it is back succeeds; no acknowledged write is
// lost.
func TestRollingRestart(t *testing.T) {
	c := startCluster(t, nil)

	// What the client loop sends; a request fails when it gets an error or
	// another status than wanted.
	type op struct {
		method, path string
		body         func(worker, i int) []byte
		want         int
	}
	ops := []op{
		{"GET", "/api/instance", nil, 200},
	}
	var post *op // if set, sent as 3 requests in 10
	// db
	seed := c.must(t, 201, "POST", "/api/notes", []byte(`{"title":"seed","body":"read during the restart"}`), nil)
	var seedNote struct {
		ID int64 `json:"id"`
	}
	seed.decode(t, &seedNote)
	// 3 requests in 10 create a note: a POST is the request a load
	// balancer must never resend once sent, so it is the one a drain that
	// closes connections under the load balancer's feet would fail.
	post = &op{"POST", "/api/notes", func(w, i int) []byte {
		return fmt.Appendf(nil, `{"title":"restart %d-%d","body":"written during the rolling restart"}`, w, i)
	}, 201}
	ops = append(ops,
		op{"GET", fmt.Sprintf("/api/notes/%d", seedNote.ID), nil, 200},
		op{"PUT", fmt.Sprintf("/api/notes/%d", seedNote.ID), func(w, i int) []byte {
			return fmt.Appendf(nil, `{"title":"seed","body":"updated by %d-%d"}`, w, i)
		}, 200},
	)
	// blob
	ops = append(ops, op{"PUT", "/api/files/restart/file", func(w, i int) []byte {
		return fmt.Appendf(nil, "file written by %d-%d", w, i)
	}, 201})

	// The client loop: bounded in time and in count. 32 clients keep
	// every instance busy, so a connection is always on its way to the one
	// that is draining.
	const workers = 32
	const maxRequests = 200000
	// Each restart takes the drain delay, the start, and up to nginx's
	// fail_timeout (10s) before the instance is back in rotation: about
	// 19s under this load; 30s each leaves room on a slow machine.
	ctx, stop := context.WithTimeout(context.Background(), time.Minute+time.Duration(len(c.apps))*30*time.Second)
	defer stop()
	var sent, failed atomic.Int64
	var refused atomic.Int64              // writes refused with 503 before they committed, then retried
	slowest := map[string]time.Duration{} // the longest request of each kind
	var mu sync.Mutex
	var failures []string
	var failedIDs []string // X-Request-ID of the failed answers: their log lines say why
	var created []string   // Location of every acknowledged POST
	// With one instance: when it was down (from the stop to back in
	// rotation), and the requests that failed as expected in that time.
	var downFrom, downTo time.Time
	var outage int
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && sent.Load() < maxRequests; i++ {
				o := ops[(w+i)%len(ops)]
				if post != nil && (w*7+i)%10 < 3 {
					o = *post
				}
				var body []byte
				if o.body != nil {
					body = o.body(w, i)
				}
				sent.Add(1)
				at := time.Now()
				r, err := c.do(o.method, o.path, body, nil)
				if err == nil && r.status == 503 && strings.Contains(string(r.body), notWritten) {
					// The cache could not hear from every instance within
					// its bound (on a machine with far fewer cores than
					// instances), so the write was refused before it
					// committed. A client retries it after Retry-After,
					// as the README says; it counts as failed only if the
					// retry fails too.
					refused.Add(1)
					time.Sleep(time.Second)
					r, err = c.do(o.method, o.path, body, nil)
				}
				took := time.Since(at)
				mu.Lock()
				slowest[o.method+" "+o.path] = max(slowest[o.method+" "+o.path], took)
				mu.Unlock()
				if err != nil || r.status != o.want {
					mu.Lock()
					down := !downFrom.IsZero() && at.After(downFrom) && (downTo.IsZero() || at.Before(downTo))
					if len(c.apps) == 1 && down && err == nil && (r.status == 502 || r.status == 503) {
						outage++
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
						continue
					}
					failed.Add(1)
					if err != nil {
						failures = append(failures, fmt.Sprintf("%s %s: %v", o.method, o.path, err))
					} else {
						failures = append(failures, fmt.Sprintf("%s %s: %s", o.method, o.path, r))
						failedIDs = append(failedIDs, r.header.Get("X-Request-ID"))
					}
					mu.Unlock()
				} else if o.method == "POST" {
					mu.Lock()
					created = append(created, r.header.Get("Location"))
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	began := time.Now()
	time.Sleep(time.Second) // the loop runs against a steady cluster first
	for _, a := range c.apps {
		t0 := time.Now()
		mu.Lock()
		downFrom = t0
		mu.Unlock()
		c.restart(t, a)
		mu.Lock()
		downTo = time.Now()
		mu.Unlock()
		t.Logf("%s restarted and back in rotation after %v (sent %d, failed %d so far)",
			a.name, time.Since(t0).Round(time.Millisecond), sent.Load(), failed.Load())
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	record(fmt.Sprintf("rolling restart (%s): requests sent", c.lbKind), sent.Load())
	record(fmt.Sprintf("rolling restart (%s): requests failed", c.lbKind), failed.Load())
	record(fmt.Sprintf("rolling restart (%s): duration", c.lbKind), time.Since(began).Round(time.Millisecond))
	t.Logf("rolling restart of %s through %s: %d requests sent, %d failed, in %v",
		instances(len(c.apps)), c.lbKind, sent.Load(), failed.Load(), time.Since(began).Round(time.Millisecond))
	t.Logf("%d writes were refused with 503 (not written) and retried after Retry-After", refused.Load())
	for _, req := range slices.Sorted(maps.Keys(slowest)) {
		t.Logf("the slowest %s: %v", req, slowest[req].Round(time.Millisecond))
	}
	if len(c.apps) == 1 {
		t.Logf("one instance: %d requests got 502 or 503 while it was down for %v, as expected (--replicas 2 or more restarts without an outage)",
			outage, downTo.Sub(downFrom).Round(time.Millisecond))
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Errorf("the rolling restart did not finish within the loop's time bound")
	}
	if n := failed.Load(); n > 0 {
		if len(failures) > 20 {
			failures = failures[:20]
		}
		t.Errorf("%d of %d requests failed during the rolling restart; the first:\n%s", n, sent.Load(), strings.Join(failures, "\n"))
		for _, a := range c.apps {
			for _, l := range a.logLines() {
				for _, id := range failedIDs {
					if id != "" && strings.Contains(l.text, id) && !strings.Contains(l.text, `"msg":"request"`) {
						t.Logf("%s [run %d]: %s", a.name, l.run, l.text)
					}
				}
			}
		}
	}

	// db: no acknowledged write was lost.
	for _, loc := range created {
		c.must(t, 200, "GET", loc, nil, nil)
	}
	t.Logf("all %d notes created during the restart read back", len(created))
}
