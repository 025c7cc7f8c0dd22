package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// webhookReceiver counts deliveries by Webhook-Id. It answers 503 to the
// first delivery of every tenth job id, so that some jobs succeed only on
// a retry.
type webhookReceiver struct {
	mu     sync.Mutex
	count  map[int64]int
	events map[int64]string // "type note_id"
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.Header.Get("Webhook-Id"), 10, 64)
	var e struct {
		Type   string `json:"type"`
		NoteID int64  `json:"note_id"`
	}
	if err != nil || json.NewDecoder(r.Body).Decode(&e) != nil {
		http.Error(w, "bad delivery", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.count[id]++
	first := rc.count[id] == 1
	rc.events[id] = fmt.Sprintf("%s %d", e.Type, e.NoteID)
	rc.mu.Unlock()
	if first && id%10 == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// queueNote is what one client did to one note: its create (replayed once
// with the same Idempotency-Key), its update, its delete, each sent again
// after an error until it was answered.
type queueNote struct {
	id                           int64
	updatesSent, updatesAnswered int
	deleteAnswered               bool
}

// send repeats a write through the load balancer until it is answered with
// one of want (an instance may be down), at most 100 times; sent counts the
// requests that may have reached an instance.
func (c *cluster) sendUntil(method, path string, body []byte, header map[string]string, want ...int) (r response, sent int, ok bool) {
	for range 100 {
		var err error
		r, err = c.do(method, path, body, header)
		sent++
		if err == nil {
			for _, w := range want {
				if r.status == w {
					return r, sent, true
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r, sent, false
}

// Hazard: a background job is lost when the instance holding it dies, runs
// on several instances, or exists for a write that rolled back. With
// NOTES_WEBHOOK_URL pointing at a receiver in this test, clients write notes
// through the load balancer (create, a replay of the create, update,
// delete: about 1,000 writes) while two instances, one of them River's
// leader, are SIGKILLed and restarted. Once the queue has drained, checked against river_job and the
// notes table: every job completed (none discarded) and was delivered at
// least once; every delivery is of a job; every job is of a write that
// committed: per note, one change for its create (the replay made none),
// at most one per update sent and at least one per update answered, a
// deletion exactly when the note is gone. Duplicate deliveries (at least
// once: a job whose instance died after sending) are counted, not failed.
func TestQueueJobs(t *testing.T) {
	rc := &webhookReceiver{count: map[int64]int{}, events: map[int64]string{}}
	hooks := httptest.NewServer(rc)
	defer hooks.Close()
	c := startCluster(t, map[string]string{"NOTES_WEBHOOK_URL": hooks.URL})
	began := time.Now()

	// River's migrations, run under the migration lock after goose's: each
	// version applied by one instance of those that started together.
	appliedBy := map[int][]string{}
	for _, a := range c.apps {
		for _, l := range a.logLines() {
			var m struct {
				Msg     string
				Version int
			}
			if json.Unmarshal([]byte(l.text), &m) == nil && m.Msg == "queue migration applied" {
				appliedBy[m.Version] = append(appliedBy[m.Version], a.name)
			}
		}
	}
	if len(appliedBy) == 0 {
		t.Error("no instance logged a queue migration")
	}
	for v, by := range appliedBy {
		if len(by) != 1 {
			t.Errorf("River migration %d applied by %v, want one instance", v, by)
		}
	}

	const clients, notesEach = 8, 42 // 336 notes, 3 writes each
	var done atomic.Int64
	results := make([][]queueNote, clients)
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			for i := range notesEach {
				n := queueNote{}
				key := map[string]string{"Idempotency-Key": fmt.Sprintf("queue-%d-%d", cl, i)}
				body := []byte(`{"title":"q","body":"v1"}`)
				r, _, ok := c.sendUntil("POST", "/api/notes", body, key, 201, 200)
				if !ok {
					t.Errorf("client %d: create %d never answered: %s", cl, i, r)
					return
				}
				var created struct {
					ID int64 `json:"id"`
				}
				if err := json.Unmarshal(r.body, &created); err != nil {
					t.Errorf("create: %v", err)
					return
				}
				n.id = created.ID
				// The replay answers the same note and writes nothing.
				if r, _, ok := c.sendUntil("POST", "/api/notes", body, key, 201, 200); !ok || !strings.Contains(string(r.body), fmt.Sprintf(`"id":%d,`, n.id)) {
					t.Errorf("replay of note %d: %s", n.id, r)
				}
				path := fmt.Sprintf("/api/notes/%d", n.id)
				_, sent, ok := c.sendUntil("PUT", path, []byte(`{"title":"q","body":"v2"}`), nil, 200)
				n.updatesSent = sent
				if ok {
					n.updatesAnswered = 1
				}
				// A delete sent again after an unknown outcome finds the
				// note gone: 404.
				r, _, ok = c.sendUntil("DELETE", path, nil, nil, 204, 404)
				n.deleteAnswered = ok && r.status == 204
				results[cl] = append(results[cl], n)
				done.Add(1)
			}
		})
	}
	// Two instances SIGKILLed early in the load (River's rescuer, which
	// looks every 30 s, then finds their jobs older than 15 s sooner), the
	// second River's leader, and each started again a second later.
	for k, at := range []int64{40, 100} {
		if !eventually(30*time.Second, func() bool { return done.Load() >= at }) {
			t.Fatalf("only %d notes written", done.Load())
		}
		// The first an instance, the second River's leader (its
		// maintenance, the rescuer included, moves to another).
		a := c.apps[k%len(c.apps)]
		leader := testsupport.PSQL(t, c.dbURL, `SELECT coalesce((SELECT leader_id FROM river_leader), '')`)
		if k == 1 && leader != "" {
			a = c.byName(leader)
		}
		t.Logf("SIGKILL %s after %d notes (River's leader: %s)", a.name, done.Load(), leader)
		a.kill()
		time.Sleep(time.Second)
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitReady(30 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, a.tail(40))
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	written := time.Since(began)

	// Drained: no job waits, runs or is due for a retry.
	pending := func() string {
		return strings.TrimSpace(testsupport.PSQL(t, c.dbURL,
			`SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')`))
	}
	if !eventually(75*time.Second, func() bool { time.Sleep(200 * time.Millisecond); return pending() == "0" }) {
		t.Fatalf("%s jobs still pending after 75s:\n%s", pending(), testsupport.PSQL(t, c.dbURL,
			`SELECT state, count(*) FROM river_job GROUP BY state`))
	}
	drained := time.Since(began)

	type job struct{ state, event string }
	jobs := map[int64]job{}
	for _, line := range strings.Split(strings.TrimSpace(testsupport.PSQL(t, c.dbURL,
		`SELECT id, state, args->>'type', args->>'note_id' FROM river_job WHERE kind = 'note_webhook'`)), "\n") {
		f := strings.Split(line, "|") // psql -At
		if len(f) != 4 {
			t.Fatalf("river_job row %q", line)
		}
		id, _ := strconv.ParseInt(f[0], 10, 64)
		jobs[id] = job{f[1], f[2] + " " + f[3]}
	}
	present := map[string]bool{}
	for _, id := range strings.Fields(testsupport.PSQL(t, c.dbURL, `SELECT id FROM notes`)) {
		present[id] = true
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	byEvent := map[string]int{}
	duplicates, retried := 0, 0
	for id, j := range jobs {
		if j.state != "completed" {
			t.Errorf("job %d (%s) is %s, want completed", id, j.event, j.state)
		}
		switch n := rc.count[id]; {
		case n == 0:
			t.Errorf("job %d (%s) completed without a delivery", id, j.event)
		case rc.events[id] != j.event:
			t.Errorf("job %d is %q, delivered as %q", id, j.event, rc.events[id])
		case id%10 == 0:
			retried++
			duplicates += n - 2 // the first, refused with 503, is not a duplicate
		default:
			duplicates += n - 1
		}
		byEvent[j.event]++
	}
	for id := range rc.count {
		if _, ok := jobs[id]; !ok {
			t.Errorf("delivery %d is of no job", id)
		}
	}
	// How many times one PUT sent to the load balancer may be written:
	// nginx sends a write again on the next instance when the connection
	// fails after it was sent (proxy_next_upstream non_idempotent, up to
	// proxy_next_upstream_tries 3 in all), and each of those may have
	// committed, with a job each; haproxy never sends a write twice once
	// an instance took it (disable-l7-retry).
	writesPerSend := 1
	if c.lbKind == "nginx" {
		writesPerSend = 3
	}
	notes := 0
	for _, list := range results {
		for _, n := range list {
			notes++
			changed := byEvent[fmt.Sprintf("note.changed %d", n.id)]
			deleted := byEvent[fmt.Sprintf("note.deleted %d", n.id)]
			delete(byEvent, fmt.Sprintf("note.changed %d", n.id))
			delete(byEvent, fmt.Sprintf("note.deleted %d", n.id))
			if changed < 1+n.updatesAnswered || changed > 1+n.updatesSent*writesPerSend {
				t.Errorf("note %d: %d change jobs, want 1 for the create and from %d to %d for the updates", n.id, changed, n.updatesAnswered, n.updatesSent*writesPerSend)
			}
			gone := !present[strconv.FormatInt(n.id, 10)]
			if (deleted == 1) != gone || deleted > 1 || (n.deleteAnswered && !gone) {
				t.Errorf("note %d: %d deletion jobs, note gone %v, delete answered %v", n.id, deleted, gone, n.deleteAnswered)
			}
		}
	}
	for event, n := range byEvent {
		t.Errorf("%d jobs %q of a note no client wrote (a rolled-back create?)", n, event)
	}
	t.Logf("%d notes, %d jobs (%d retried after a 503), all delivered; %d duplicate deliveries; written in %v, drained %v after the start",
		notes, len(jobs), retried, duplicates, written.Round(time.Millisecond), drained.Round(time.Millisecond))
	record("queue: jobs, duplicate deliveries", fmt.Sprintf("%d jobs, 2 instances SIGKILLed (one River's leader), %d duplicates", len(jobs), duplicates))
}

// benchQueue measures jobs per second end to end: from the first of 1,000
// note creates (each enqueues its webhook job in its transaction) to the
// last delivery at a receiver here, with every instance working the queue,
// then with one. It runs a cluster of its own, whose instances have
// NOTES_WEBHOOK_URL set.
func benchQueue(b *testing.B, tab *benchTable) {
	var delivered atomic.Int64
	hooks := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { delivered.Add(1) }))
	defer hooks.Close()
	c := startCluster(b, map[string]string{"NOTES_WEBHOOK_URL": hooks.URL})
	for _, a := range c.apps {
		a.setQuiet()
	}
	const jobs = 1000
	run := func(base string) (rate float64) {
		want := delivered.Load() + jobs
		began := time.Now()
		var wg sync.WaitGroup
		clients := benchClients()
		for cl := range clients {
			wg.Go(func() {
				for i := cl; i < jobs; i += clients {
					r, err := c.doAt(base, "POST", "/api/notes", []byte(`{"title":"bench","body":"queue"}`), nil)
					if err != nil || r.status != 201 {
						b.Errorf("create: %v %s", err, r)
						return
					}
				}
			})
		}
		wg.Wait()
		if !eventually(2*time.Minute, func() bool { return delivered.Load() >= want }) {
			b.Fatalf("%d of %d jobs delivered after 2 minutes", delivered.Load()-want+jobs, jobs)
		}
		return jobs / time.Since(began).Seconds()
	}
	n := run(c.lb.URL)
	for _, a := range c.apps[1:] {
		if err := a.stop(); err != nil {
			b.Fatal(err)
		}
	}
	one := run(instanceURL(c.apps[0]))
	tab.add("queue jobs", fmt.Sprintf("%d note creates by %d clients until their %d webhook jobs were delivered: %s through %s", jobs, benchClients(), jobs, instances(len(c.apps)), c.lbKind),
		fmt.Sprintf("%.0f jobs/s", n), fmt.Sprintf("1 instance, direct: %.0f jobs/s", one), fmt.Sprintf("%.2f", n/one))
}
