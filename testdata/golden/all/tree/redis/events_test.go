package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/realtime"
	"example.com/acme/shop/testsupport"
)

func newEvents(t *testing.T, url string, maxLen int64) *Events {
	t.Helper()
	e, err := NewEvents(EventsOptions{URL: url, Prefix: "test", MaxLen: maxLen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func change(id, version int64, body string) realtime.Change {
	return realtime.Change{NoteID: id, Version: version, Note: &notes.Note{ID: id, Title: "t", Body: body}}
}

func publish(t *testing.T, e *Events, c realtime.Change) {
	t.Helper()
	ok, err := e.Publish(context.Background(), c)
	if err != nil || !ok {
		t.Fatalf("publish note %d version %d: published %v, %v", c.NoteID, c.Version, ok, err)
	}
}

// decode reads the change an event carries.
func decode(t *testing.T, ev realtime.Event) realtime.Change {
	t.Helper()
	var c realtime.Change
	if err := json.Unmarshal(ev.Data, &c); err != nil {
		t.Fatalf("event %s: data %q: %v", ev.ID, ev.Data, err)
	}
	return c
}

func TestEventsPublishAndRead(t *testing.T) {
	e := newEvents(t, testsupport.Redis(t).URL, 1000)
	ctx := context.Background()
	if last, err := e.Last(ctx); err != nil || last != "0-0" {
		t.Fatalf("Last of an empty log = %q, %v; want 0-0", last, err)
	}
	publish(t, e, change(1, 1, "a"))
	publish(t, e, change(1, 2, "b"))
	publish(t, e, realtime.Change{NoteID: 1, Version: 3})
	events, err := e.Read(ctx, "", 10, 0)
	if err != nil || len(events) != 3 {
		t.Fatalf("Read = %d events, %v; want 3", len(events), err)
	}
	prev := "0-0"
	for i, want := range []string{realtime.Created, realtime.Updated, realtime.Deleted} {
		ev := events[i]
		if ev.Type != want || ev.Prev != prev || decode(t, ev).Version != int64(i+1) {
			t.Errorf("event %d: type %s prev %q data %s; want %s after %q", i, ev.Type, ev.Prev, ev.Data, want, prev)
		}
		prev = ev.ID
	}
	if last, _ := e.Last(ctx); last != events[2].ID {
		t.Errorf("Last = %s, want %s", last, events[2].ID)
	}
	if rest, err := e.Read(ctx, events[0].ID, 10, 0); err != nil || len(rest) != 2 || rest[0].ID != events[1].ID {
		t.Errorf("Read after the first = %v, %v; want the other two", rest, err)
	}
}

// TestEventsVersionGuard: the log refuses a version of a note that is not
// greater than the last published, so a late publish of an older state
// never follows a newer one.
func TestEventsVersionGuard(t *testing.T) {
	e := newEvents(t, testsupport.Redis(t).URL, 1000)
	ctx := context.Background()
	publish(t, e, change(7, 2, "newer"))
	for _, v := range []int64{1, 2} {
		if ok, err := e.Publish(ctx, change(7, v, "older")); err != nil || ok {
			t.Errorf("publish version %d after 2: published %v, %v; want refused", v, ok, err)
		}
	}
	publish(t, e, change(8, 1, "another note")) // per note
	publish(t, e, change(7, 3, "next"))
	events, _ := e.Read(ctx, "", 10, 0)
	if len(events) != 3 {
		t.Fatalf("%d events in the log, want 3", len(events))
	}
}

// follow runs hub.Follow from after in the background and returns what it
// sent, read by got.
type follow struct {
	mu     sync.Mutex
	events []realtime.Event
	cancel context.CancelFunc
	done   chan error
}

func startFollow(t *testing.T, hub *realtime.Hub, after string, slow time.Duration) *follow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follow{cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- hub.Follow(ctx, after, func(ev realtime.Event) error {
			time.Sleep(slow)
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { f.stop(t) })
	return f
}

func (f *follow) stop(t *testing.T) {
	f.cancel()
	if err := <-f.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Follow: %v", err)
	}
	f.done <- nil // stop is idempotent
}

// waitFor waits until the follower got n events, and returns them.
func (f *follow) waitFor(t *testing.T, n int) []realtime.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		got := append([]realtime.Event(nil), f.events...)
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events within 10s, want %d: %v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startHub(t *testing.T, e *Events) *realtime.Hub {
	t.Helper()
	hub := realtime.NewHub(e, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for !hub.Started() {
		time.Sleep(5 * time.Millisecond)
	}
	return hub
}

// checkNotes checks events against the writes: every version of every note
// in order, each once, no reset.
func checkNotes(t *testing.T, events []realtime.Event, notes, versions int) {
	t.Helper()
	next := map[int64]int64{}
	for _, ev := range events {
		if ev.Type == realtime.Reset {
			t.Errorf("unexpected reset %s", ev.Data)
			continue
		}
		c := decode(t, ev)
		if c.Version != next[c.NoteID]+1 {
			t.Errorf("note %d: version %d after %d", c.NoteID, c.Version, next[c.NoteID])
		}
		next[c.NoteID] = c.Version
	}
	for id := int64(1); id <= int64(notes); id++ {
		if next[id] != int64(versions) {
			t.Errorf("note %d: got up to version %d, want %d", id, next[id], versions)
		}
	}
}

// TestEventsReplayThenLive: a client that reconnects with the id of an
// event gets every event after it, those already in the log and those
// published while it catches up, in order, once.
func TestEventsReplayThenLive(t *testing.T) {
	e := newEvents(t, testsupport.Redis(t).URL, 10000)
	hub := startHub(t, e)
	for v := int64(1); v <= 50; v++ {
		publish(t, e, change(1, v, fmt.Sprint(v)))
	}
	first, _ := e.Read(context.Background(), "", 1, 0)
	f := startFollow(t, hub, first[0].ID, 0)
	go func() {
		for v := int64(51); v <= 100; v++ {
			publish(t, e, change(1, v, fmt.Sprint(v)))
		}
	}()
	f.waitFor(t, 99)
	time.Sleep(100 * time.Millisecond)
	f.stop(t)
	all := append([]realtime.Event{first[0]}, f.events...)
	checkNotes(t, all, 1, 100)
}

// TestEventsSlowSubscriberCatchesUp: a subscriber that lags more than its
// buffer is dropped by the hub and catches up from the log: it still gets
// every event, in order, once.
func TestEventsSlowSubscriberCatchesUp(t *testing.T) {
	e := newEvents(t, testsupport.Redis(t).URL, 10000)
	hub := startHub(t, e)
	f := startFollow(t, hub, "", 2*time.Millisecond)
	fast := startFollow(t, hub, "", 0)
	const noteCount, versions = 4, 200 // 800 events, over 3 times the buffer
	for v := int64(1); v <= versions; v++ {
		for id := int64(1); id <= noteCount; id++ {
			publish(t, e, change(id, v, fmt.Sprint(v)))
		}
	}
	checkNotes(t, f.waitFor(t, noteCount*versions), noteCount, versions)
	checkNotes(t, fast.waitFor(t, noteCount*versions), noteCount, versions)
}

// TestEventsBeyondRetentionResets: a client whose last id was trimmed from
// the log gets a reset before the events that are left, never a silent gap.
func TestEventsBeyondRetentionResets(t *testing.T) {
	e := newEvents(t, testsupport.Redis(t).URL, 100)
	hub := startHub(t, e)
	publish(t, e, change(1, 1, "first"))
	first, _ := e.Last(context.Background())
	for v := int64(2); v <= 1000; v++ {
		publish(t, e, change(1, v, fmt.Sprint(v)))
	}
	f := startFollow(t, hub, first, 0)
	events := f.waitFor(t, 2)
	if events[0].Type != realtime.Reset {
		t.Fatalf("first event %s %s, want a reset", events[0].Type, events[0].Data)
	}
	kept, _ := e.Read(context.Background(), "", 10000, 0)
	if len(kept) < 100 || len(kept) >= 999 {
		t.Errorf("the log keeps %d events with MAXLEN ~ 100, want at least 100 and fewer than all", len(kept))
	}
	events = f.waitFor(t, 1+len(kept))
	if events[1].ID != kept[0].ID || events[len(kept)].ID != kept[len(kept)-1].ID {
		t.Errorf("after the reset: %s .. %s, want the log's %s .. %s", events[1].ID, events[len(kept)].ID, kept[0].ID, kept[len(kept)-1].ID)
	}
	// The same for an id the log never had (from before a Redis that lost
	// its data, or made up).
	g := startFollow(t, hub, "99999999999999-0", 0)
	if ev := g.waitFor(t, 1)[0]; ev.Type != realtime.Reset {
		t.Errorf("an id past the log: first event %s, want a reset", ev.Type)
	}
}

// TestEventsRedisLostDataResets: Redis restarts empty. A client that
// reconnects with an id of the lost log, and one that stayed connected, get
// a reset before the first new event.
func TestEventsRedisLostDataResets(t *testing.T) {
	rs := testsupport.Redis(t)
	e := newEvents(t, rs.URL, 1000)
	hub := startHub(t, e)
	for v := int64(1); v <= 3; v++ {
		publish(t, e, change(1, v, fmt.Sprint(v)))
	}
	last, _ := e.Last(context.Background())
	stayed := startFollow(t, hub, last, 0)
	rs.Stop(t)
	rs.Start(t)
	// The version guard was lost too: the note starts again at any version.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := e.Publish(context.Background(), change(1, 4, "after"))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the restart: %v, %v", ok, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	back := startFollow(t, hub, last, 0)
	for name, f := range map[string]*follow{"stayed": stayed, "reconnected": back} {
		events := f.waitFor(t, 2)
		if events[0].Type != realtime.Reset || decode(t, events[1]).Version != 4 {
			t.Errorf("%s: %s then %s, want a reset then version 4", name, events[0].Type, events[1].Data)
		}
	}
}
