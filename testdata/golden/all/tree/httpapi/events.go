package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"example.com/acme/shop/realtime"
)

// Events is what GET /api/events streams from: realtime.Hub.
type Events interface {
	// Started reports whether the event log has been reached.
	Started() bool
	// Follow sends the events after the id until ctx ends or send fails.
	Follow(ctx context.Context, after string, send func(realtime.Event) error) error
}

// Why Server-Sent Events and not WebSocket: the events go one way, SSE is
// plain HTTP that both load balancers pass as it is (with buffering off), and
// browsers reconnect by themselves with Last-Event-ID, which is the replay.

const (
	// defaultHeartbeat is the interval of ": ping" comments on an idle
	// stream: well under the load balancers' 60 s idle timeouts.
	defaultHeartbeat = 15 * time.Second
	// streamWriteTimeout cuts a client that reads nothing for this long.
	streamWriteTimeout = 30 * time.Second
)

func (s *Server) eventsRoutes() {
	if s.opts.Events == nil {
		return
	}
	s.mux.HandleFunc("GET /api/events", s.events)
}

// events streams the changes of notes as Server-Sent Events: each event has
// the log's id, a type (note.created, note.updated, note.deleted) and the
// change as JSON data; a reset event (no id) says that events were missed.
// A client that reconnects sends the last id it got in Last-Event-ID and
// gets what it missed first. The stream ends cleanly when the instance
// drains; the client reconnects through the load balancer to another.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "this instance is stopping: connect again")
		return
	}
	after := r.Header.Get("Last-Event-ID")
	if after != "" {
		if _, err := realtime.ParseID(after); err != nil {
			writeError(w, r, http.StatusBadRequest, "bad_request", fmt.Sprintf(
				"Last-Event-ID %q is not an event id: send the id of the last event received (such as 1700000000000-0), or no Last-Event-ID to start from now", after))
			return
		}
	}
	if !s.opts.Events.Started() {
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "the event log cannot be reached")
		return
	}

	// The server's WriteTimeout would cut the stream after 60 s: each
	// write gets its own deadline instead.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event at once
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var mu sync.Mutex // the heartbeat and the events write in turn
	write := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The client waits 1 s before it reconnects (the browser's default is
	// about 3 s).
	if err := write([]byte("retry: 1000\n\n")); err != nil {
		return
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		heartbeat := time.NewTicker(s.heartbeat())
		defer heartbeat.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.streams.ended():
				cancel() // drain: end the stream, the client reconnects elsewhere
				return
			case <-heartbeat.C:
				if write([]byte(": ping\n\n")) != nil {
					cancel()
					return
				}
			}
		}
	}()
	err := s.opts.Events.Follow(ctx, after, func(ev realtime.Event) error {
		return write(formatEvent(ev))
	})
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		logger(r.Context()).Warn("event stream ended", "err", err)
	}
}

func (s *Server) heartbeat() time.Duration {
	if s.opts.EventsHeartbeat > 0 {
		return s.opts.EventsHeartbeat
	}
	return defaultHeartbeat
}

// formatEvent writes one event in the text/event-stream format. Data is
// JSON on one line; a reset has no id, so the client keeps its last one.
func formatEvent(ev realtime.Event) []byte {
	var b bytes.Buffer
	if ev.ID != "" {
		fmt.Fprintf(&b, "id: %s\n", ev.ID)
	}
	fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", ev.Type, ev.Data)
	return b.Bytes()
}

// streams ends the open event streams when the server drains (Drain).
type streams struct {
	mu    sync.Mutex
	done  chan struct{}
	isEnd bool
}

func (st *streams) ended() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done == nil {
		st.done = make(chan struct{})
	}
	return st.done
}

func (st *streams) end() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done == nil {
		st.done = make(chan struct{})
	}
	if !st.isEnd {
		st.isEnd = true
		close(st.done)
	}
}
