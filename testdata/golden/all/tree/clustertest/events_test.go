package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// subscriber is a client of GET /api/events as a browser's EventSource
// is: when its stream ends or fails, it connects again through the load
// balancer with the id of the last event it got (Last-Event-ID), after a
// short wait. It records every event it was given.
type subscriber struct {
	name   string
	client *http.Client

	mu        sync.Mutex
	last      string     // Last-Event-ID of the next connection
	events    []sseEvent // events with an id, in the order received
	resets    int
	streams   []string // the instance of each stream, in order
	refused   int      // connections answered with another status than 200
	delivered map[string]time.Time
}

type sseEvent struct {
	id, typ string
	change  struct {
		ID      int64 `json:"id"`
		Version int64 `json:"version"`
		Note    *struct {
			Body string `json:"body"`
		} `json:"note"`
	}
}

func newSubscriber(name string) *subscriber {
	return &subscriber{
		name: name, last: "0-0", delivered: map[string]time.Time{},
		// No timeout: a stream stays open. The context ends it.
		client: &http.Client{Transport: &http.Transport{DisableCompression: true}},
	}
}

// run connects to base first, then through lb, until ctx ends.
func (s *subscriber) run(ctx context.Context, base, lb string) {
	for ctx.Err() == nil {
		s.stream(ctx, base)
		base = lb
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // the stream's retry is 1s; shorter here
		}
	}
}

// stream reads one connection until it ends.
func (s *subscriber) stream(ctx context.Context, base string) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	req.Header.Set("Last-Event-ID", s.last)
	s.mu.Unlock()
	resp, err := s.client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	s.mu.Lock()
	if resp.StatusCode != 200 {
		s.refused++
		s.mu.Unlock()
		return
	}
	s.streams = append(s.streams, resp.Header.Get("X-Instance-ID"))
	s.mu.Unlock()
	sc := bufio.NewScanner(resp.Body)
	var id, typ, data string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				id = v
			case "event":
				typ = v
			case "data":
				data = v
			}
			continue
		}
		if typ != "" {
			s.add(id, typ, data)
		}
		id, typ, data = "", "", ""
	}
}

func (s *subscriber) add(id, typ, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if typ == "reset" {
		s.resets++
		return
	}
	ev := sseEvent{id: id, typ: typ}
	if err := json.Unmarshal([]byte(data), &ev.change); err != nil {
		ev.typ = "undecodable: " + data
	}
	s.events = append(s.events, ev)
	s.last = id
	s.delivered[fmt.Sprintf("%d/%d", ev.change.ID, ev.change.Version)] = time.Now()
}

func (s *subscriber) snapshot() ([]sseEvent, int, []string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sseEvent(nil), s.events...), s.resets, append([]string(nil), s.streams...), s.refused
}

// noteWrites is what one writer did to one note: the bodies of its
// acknowledged writes in order ("" for the delete).
type noteWrites struct {
	id     int64
	bodies []string
	maybe  int // writes with no answer: they may have been applied
}

// write sends writes of its own notes one after another, through the load
// balancer, until stop; each note gets creates, updates and at the end a
// delete. A write answered 503 "not written" is sent again.
func (c *cluster) eventWriter(t *testing.T, w int, notes int, stop <-chan struct{}) []*noteWrites {
	var out []*noteWrites
	for n := range notes {
		body := fmt.Sprintf("w%d-n%d-0", w, n)
		r, err := c.do("POST", "/api/notes", fmt.Appendf(nil, `{"title":"events","body":%q}`, body), map[string]string{"Idempotency-Key": fmt.Sprintf("events-%d-%d", w, n)})
		if err != nil || r.status != 201 {
			t.Errorf("writer %d: create: %v %v", w, r, err)
			return out
		}
		var note struct{ ID int64 }
		r.decode(t, &note)
		out = append(out, &noteWrites{id: note.ID, bodies: []string{body}})
	}
	for i := 1; ; i++ {
		select {
		case <-stop:
			// The last write of the first note is a delete.
			nw := out[0]
			if c.eventWrite(t, nw, "DELETE", "") {
				nw.bodies = append(nw.bodies, "")
			}
			return out
		default:
		}
		nw := out[i%len(out)]
		body := fmt.Sprintf("w%d-n%d-%d", w, i%len(out), i)
		if c.eventWrite(t, nw, "PUT", body) {
			nw.bodies = append(nw.bodies, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventWrite sends one write, again after a 503 (not written), and reports
// whether it was acknowledged.
func (c *cluster) eventWrite(t *testing.T, nw *noteWrites, method, body string) bool {
	path := fmt.Sprintf("/api/notes/%d", nw.id)
	for range 3 {
		var b []byte
		if method == "PUT" {
			b = fmt.Appendf(nil, `{"title":"events","body":%q}`, body)
		}
		r, err := c.do(method, path, b, nil)
		switch {
		case err == nil && (r.status == 200 || r.status == 204):
			return true
		case err == nil && r.status == 503:
			time.Sleep(100 * time.Millisecond)
			continue
		}
		nw.maybe++
		t.Logf("%s %s: %v %v (may have been applied)", method, path, r, err)
		return false
	}
	return false
}

// checkHistory checks what one subscriber received against the writes:
// for each note, the events in increasing version, each version once, and
// every acknowledged write's body among them in the order written (a write
// with no answer may add a body); a deleted note ends with its delete.
func checkHistory(t *testing.T, s *subscriber, writes []*noteWrites) (lost int) {
	t.Helper()
	events, resets, _, _ := s.snapshot()
	if resets != 0 {
		t.Errorf("%s: %d reset events within the retention", s.name, resets)
	}
	byNote := map[int64][]sseEvent{}
	for _, ev := range events {
		byNote[ev.change.ID] = append(byNote[ev.change.ID], ev)
	}
	for _, nw := range writes {
		evs := byNote[nw.id]
		var got []string
		var version int64
		for _, ev := range evs {
			if ev.change.Version <= version {
				t.Errorf("%s: note %d: version %d after %d (event %s)", s.name, nw.id, ev.change.Version, version, ev.id)
			}
			version = ev.change.Version
			if ev.change.Note == nil {
				got = append(got, "")
			} else {
				got = append(got, ev.change.Note.Body)
			}
		}
		// The acknowledged bodies must be a subsequence of the received ones.
		i := 0
		for _, b := range got {
			if i < len(nw.bodies) && b == nw.bodies[i] {
				i++
			}
		}
		if i < len(nw.bodies) {
			lost += len(nw.bodies) - i
			t.Errorf("%s: note %d: acknowledged write %q (%d of %d) not received in order; received %q", s.name, nw.id, nw.bodies[i], i+1, len(nw.bodies), got)
		}
		if extra := len(got) - len(nw.bodies); extra > nw.maybe {
			t.Errorf("%s: note %d: %d events more than the %d acknowledged writes, with %d unanswered", s.name, nw.id, extra, len(nw.bodies), nw.maybe)
		}
	}
	return lost
}

// eventsUnder starts subscribers on every instance (one connected to the
// instance, one through the load balancer; both reconnect through the load
// balancer) and writers that write notes through the load balancer, runs
// during, stops the writers, and checks every subscriber's history
// (checkHistory). It returns the subscribers, the acknowledged writes and
// how many of them some subscriber lost.
func eventsUnder(t *testing.T, c *cluster, during func()) (subs []*subscriber, acked, lost int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, a := range c.apps {
		for j, base := range []string{"http://" + a.addr(), c.lb.URL} {
			s := newSubscriber(fmt.Sprintf("sub-%d-%d", i, j))
			subs = append(subs, s)
			wg.Add(1)
			go func() { defer wg.Done(); s.run(ctx, base, c.lb.URL) }()
		}
	}
	if !eventually(10*time.Second, func() bool {
		for _, s := range subs {
			if _, _, streams, _ := s.snapshot(); len(streams) == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("subscribers not connected within 10s")
	}

	const writers, notesEach = 4, 2
	stop := make(chan struct{})
	results := make([][]*noteWrites, writers)
	var ww sync.WaitGroup
	for w := range writers {
		ww.Add(1)
		go func() { defer ww.Done(); results[w] = c.eventWriter(t, w, notesEach, stop) }()
	}
	time.Sleep(500 * time.Millisecond)
	during()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	ww.Wait()

	var writes []*noteWrites
	want := map[int64]int{}
	for _, r := range results {
		writes = append(writes, r...)
		for _, nw := range r {
			acked += len(nw.bodies)
			want[nw.id] = len(nw.bodies)
		}
	}
	// Every subscriber gets the last events within a few seconds.
	eventually(10*time.Second, func() bool {
		for _, s := range subs {
			events, _, _, _ := s.snapshot()
			got := map[int64]int{}
			for _, ev := range events {
				got[ev.change.ID]++
			}
			for id, n := range want {
				if got[id] < n {
					return false
				}
			}
		}
		return true
	})
	for _, s := range subs {
		lost += checkHistory(t, s, writes)
	}
	return subs, acked, lost
}

// Hazard: events raised on one instance must reach the clients of every
// instance, and a client whose instance stops must lose none. Subscribers
// start on each instance (and through the load balancer) while writers
// update notes through the load balancer, and every instance is restarted
// in turn. Each subscriber's stream ends at its instance's drain; it
// reconnects through the load balancer with Last-Event-ID. Afterwards every
// subscriber must have received, for every note, every acknowledged write's
// event, in version order, each once, with no reset.
func TestEventsRollingRestart(t *testing.T) {
	c := startCluster(t, nil)
	began := time.Now()
	subs, acked, lost := eventsUnder(t, c, func() {
		for _, a := range c.apps {
			c.restart(t, a)
		}
	})
	reconnects, refused := 0, 0
	for _, s := range subs {
		_, _, streams, ref := s.snapshot()
		reconnects += len(streams) - 1
		refused += ref
		if len(streams) < 2 {
			t.Errorf("%s: one stream for the whole rolling restart (%v): its instance's drain did not end it", s.name, streams)
		}
	}
	record("events: rolling restart", fmt.Sprintf("%d acknowledged writes to %d subscribers, %d lost, %d reconnects (%d refused), %v",
		acked, len(subs), lost, reconnects, refused, time.Since(began).Round(100*time.Millisecond)))
}

// Hazard: an instance frozen (SIGSTOP: a GC stall, a frozen VM) in the
// middle of writes and streams. Its subscribers hear nothing while it is
// frozen, then get what they missed when it resumes; writes it held may
// time out at the load balancer (answered or not, they count as
// unanswered, and may add events). No acknowledged write's event may be
// lost or come out of order for any subscriber.
func TestEventsInstancePaused(t *testing.T) {
	c := startCluster(t, nil)
	paused := c.apps[0]
	subs, acked, lost := eventsUnder(t, c, func() {
		if err := paused.sendSignal(syscall.SIGSTOP); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(6 * time.Second)
		if err := paused.sendSignal(syscall.SIGCONT); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
	})
	record("events: one instance paused 6 s", fmt.Sprintf("%d acknowledged writes to %d subscribers, %d lost", acked, len(subs), lost))
}

// benchEvents measures the fan-out: from the response to a write sent to
// one instance to the delivery of its event to a subscriber of another.
func benchEvents(b *testing.B, c *cluster, tab *benchTable) {
	if len(c.apps) < 2 {
		b.Log("events row: needs 2 instances")
		return
	}
	writer, reader := c.apps[0], c.apps[1]
	ctx, cancel := context.WithCancel(context.Background())
	s := newSubscriber("bench")
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx, instanceURL(reader), c.lb.URL) }()
	defer func() { cancel(); <-done }()
	if !eventually(10*time.Second, func() bool { _, _, streams, _ := s.snapshot(); return len(streams) > 0 }) {
		b.Fatal("events: the subscriber did not connect within 10s")
	}
	r, err := c.doAt(instanceURL(writer), "POST", "/api/notes", []byte(`{"title":"bench events","body":"0"}`), nil)
	if err != nil || r.status != 201 {
		b.Fatalf("events: create: %v %v", r, err)
	}
	var note struct{ ID int64 }
	r.decode(b, &note)
	n := benchEnvInt("BENCH_EVENTS", 300)
	sent, acked := make([]time.Time, n), make([]time.Time, n)
	for i := range n {
		sent[i] = time.Now()
		r, err := c.doAt(instanceURL(writer), "PUT", fmt.Sprintf("/api/notes/%d", note.ID), fmt.Appendf(nil, `{"title":"bench events","body":"%d"}`, i+1), nil)
		if err != nil || r.status != 200 {
			b.Fatalf("events: update: %v %v", r, err)
		}
		acked[i] = time.Now()
		time.Sleep(5 * time.Millisecond) // one write at a time: latency, not throughput
	}
	key := func(i int) string { return fmt.Sprintf("%d/%d", note.ID, i+2) } // version 1 is the create
	if !eventually(10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.delivered[key(n-1)]
		return ok
	}) {
		b.Fatal("events: the last event did not arrive within 10s")
	}
	// The write's response is sent after its event is in the log, so the
	// event often arrives first: then its latency from the response is 0.
	var lat, fromSend, write []time.Duration
	first := 0
	s.mu.Lock()
	for i := range n {
		if at, ok := s.delivered[key(i)]; ok {
			lat = append(lat, max(at.Sub(acked[i]), 0))
			fromSend = append(fromSend, at.Sub(sent[i]))
			write = append(write, acked[i].Sub(sent[i]))
			if at.Before(acked[i]) {
				first++
			}
		}
	}
	s.mu.Unlock()
	if len(lat) != n {
		b.Errorf("events: %d of %d events delivered", len(lat), n)
	}
	tab.add("events, fan-out", fmt.Sprintf("%d updates of one note sent to %s one at a time; a subscriber of GET /api/events on %s (%d events arrived before their write's response)", n, writer.name, reader.name, first),
		fmt.Sprintf("write response to delivery p50 %s, p99 %s; write sent to delivery p50 %s, p99 %s", ms(pct(lat, 0.50)), ms(pct(lat, 0.99)), ms(pct(fromSend, 0.50)), ms(pct(fromSend, 0.99))),
		fmt.Sprintf("the write's round trip p50 %s, p99 %s", ms(pct(write, 0.50)), ms(pct(write, 0.99))), "-")
}
