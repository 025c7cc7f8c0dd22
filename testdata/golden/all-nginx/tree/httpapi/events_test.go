package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/realtime"
	"example.com/acme/shop/redis"
	"example.com/acme/shop/testsupport"
)

// eventsServer serves GET /api/events from a hub on a real Redis, behind
// an http.Server with a WriteTimeout of 1s, which the stream must outlive.
func eventsServer(t *testing.T, heartbeat time.Duration) (*Server, *httptest.Server, *redis.Events) {
	t.Helper()
	stream, err := redis.NewEvents(redis.EventsOptions{URL: testsupport.Redis(t).URL, Prefix: "test", MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Close() })
	hub := realtime.NewHub(stream, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !hub.Started() {
		if time.Now().After(deadline) {
			t.Fatal("the hub did not reach Redis within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := New(Options{InstanceID: "test", Events: hub, EventsHeartbeat: heartbeat, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewUnstartedServer(s)
	ts.Config.WriteTimeout = time.Second
	ts.Start()
	t.Cleanup(ts.Close)
	return s, ts, stream
}

// sseEvent is one event or comment read from a stream.
type sseEvent struct{ id, event, data, comment string }

// openStream opens GET /api/events (with Last-Event-ID when lastID is not
// empty) and returns its events on a channel, closed at the end of the
// stream.
func openStream(t *testing.T, url, lastID string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/api/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					ev.id = v
				case "event":
					ev.event = v
				case "data":
					ev.data = v
				}
			}
		}
	}()
	return resp, out
}

// next returns the next event that is not a comment or retry.
func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.event != "" {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 5s")
		}
	}
}

func noteChange(id, version int64, body string) realtime.Change {
	return realtime.Change{NoteID: id, Version: version, Note: &notes.Note{ID: id, Title: "t", Body: body}}
}

func TestEventsStream(t *testing.T) {
	_, ts, stream := eventsServer(t, 0)
	resp, events := openStream(t, ts.URL, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("status %d, Content-Type %q, X-Accel-Buffering %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Accel-Buffering"))
	}
	ctx := context.Background()
	for v := int64(1); v <= 3; v++ {
		if _, err := stream.Publish(ctx, noteChange(5, v, "body")); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, want := range []string{realtime.Created, realtime.Updated, realtime.Updated} {
		ev := next(t, events)
		var c realtime.Change
		if ev.event != want || ev.id == "" || json.Unmarshal([]byte(ev.data), &c) != nil || c.NoteID != 5 || c.Note.Body != "body" {
			t.Fatalf("event %+v, want %s of note 5", ev, want)
		}
		ids = append(ids, ev.id)
	}

	// A client that reconnects with the first id gets the other two.
	_, replay := openStream(t, ts.URL, ids[0])
	for _, id := range ids[1:] {
		if ev := next(t, replay); ev.id != id {
			t.Errorf("replay: event %s, want %s", ev.id, id)
		}
	}
}

func TestEventsBadLastEventID(t *testing.T) {
	_, ts, _ := eventsServer(t, 0)
	for _, id := range []string{"yesterday", "12", "1-2-3", "-1-0"} {
		resp, _ := openStream(t, ts.URL, id)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "Last-Event-ID") || !strings.Contains(string(body), "bad_request") {
			t.Errorf("Last-Event-ID %q: %d %s, want 400 naming Last-Event-ID", id, resp.StatusCode, body)
		}
	}
}

// TestEventsHeartbeatOutlivesWriteTimeout: an idle stream gets ": ping"
// comments, and lives past the server's WriteTimeout (1s here).
func TestEventsHeartbeatOutlivesWriteTimeout(t *testing.T) {
	_, ts, stream := eventsServer(t, 100*time.Millisecond)
	_, events := openStream(t, ts.URL, "")
	pings := 0
	timeout := time.After(2 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended after %d pings", pings)
			}
			if ev.comment == "ping" {
				pings++
			}
		case <-timeout:
			done = true
		}
	}
	if pings < 10 {
		t.Errorf("%d pings in 2s at 100ms, want at least 10", pings)
	}
	if _, err := stream.Publish(context.Background(), noteChange(1, 1, "late")); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.event != realtime.Created {
		t.Errorf("after 2s: %+v, want the event", ev)
	}
}

// TestEventsDrainEndsStream: when the server drains, an open stream ends
// cleanly (the client reconnects elsewhere), and a new one is refused with
// 503 so that the load balancer or the client tries another instance.
func TestEventsDrainEndsStream(t *testing.T) {
	s, ts, _ := eventsServer(t, 0)
	_, events := openStream(t, ts.URL, "")
	time.Sleep(100 * time.Millisecond)
	s.Drain()
	timeout := time.After(2 * time.Second)
	for ended := false; !ended; {
		select {
		case _, ok := <-events:
			ended = !ok
		case <-timeout:
			t.Fatal("the stream did not end within 2s of the drain")
		}
	}
	resp, _ := openStream(t, ts.URL, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a stream opened while draining: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
