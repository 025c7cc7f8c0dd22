package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Hub reads the log in one loop per instance and hands every event to the
// local subscribers, so that a thousand open streams cost one blocking read
// in Redis, not a thousand connections.
type Hub struct {
	stream Stream
	log    *slog.Logger

	mu    sync.Mutex
	last  string // id of the last event read
	known bool   // last is known: the loop has started
	subs  map[*sub]struct{}
}

// subBuffer is how many events a subscriber may lag behind the hub. One
// that lags more is dropped by the hub and reads the log itself until it
// has caught up (Follow): memory stays bounded, and a slow client slows
// no one else.
const subBuffer = 256

type sub struct {
	c chan Event
}

// NewHub returns a hub on the stream; Run starts it.
func NewHub(stream Stream, log *slog.Logger) *Hub {
	return &Hub{stream: stream, log: log, subs: map[*sub]struct{}{}}
}

// Run reads the log until ctx ends. A Redis that fails is retried every
// second; subscribers wait meanwhile (their heartbeats go on).
func (h *Hub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		h.mu.Lock()
		last, known := h.last, h.known
		h.mu.Unlock()
		if !known {
			id, err := h.stream.Last(ctx)
			if err != nil {
				h.log.Warn("events: cannot read the log", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			h.mu.Lock()
			h.last, h.known = id, true
			h.mu.Unlock()
			continue
		}
		events, err := h.stream.Read(ctx, last, 100, 2*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("events: cannot read the log", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		h.mu.Lock()
		for _, ev := range events {
			for s := range h.subs {
				select {
				case s.c <- ev:
				default: // lags: it reads the log itself (Follow)
					delete(h.subs, s)
					close(s.c)
				}
			}
			h.last = ev.ID
		}
		h.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ErrNotStarted is returned by Follow while the hub has not yet read the
// log (Redis is unreachable since the instance started).
var ErrNotStarted = errors.New("events: the log has not been reached yet")

// subscribe registers a subscriber. The events it will receive are those
// the hub reads after from.
func (h *Hub) subscribe() (s *sub, from string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known {
		return nil, "", ErrNotStarted
	}
	s = &sub{c: make(chan Event, subBuffer)}
	h.subs[s] = struct{}{}
	return s, h.last, nil
}

func (h *Hub) unsubscribe(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

// Started reports whether the hub has read the log since it started.
func (h *Hub) Started() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.known
}

// Follow sends the events after the id (the client's Last-Event-ID; "" for
// from now on) to send, in log order, until ctx ends or send fails: first
// those in the log (replay), then those the hub reads (live). Before an
// event whose Prev is not the last id sent, and when after is not in the
// log any more, it sends a reset (an Event of type Reset with no id): the
// events in between were trimmed or lost.
//
// Why no event falls between replay and live: the subscription starts
// before the replay, at the hub's position p; the replay reads the log up
// to its end, which is at or past p, and live events are those after p.
// Events seen twice are skipped by id.
func (h *Hub) Follow(ctx context.Context, after string, send func(Event) error) error {
	f := follower{hub: h, after: after, send: send}
	for {
		s, from, err := h.subscribe()
		if err != nil {
			return err
		}
		if f.after == "" && !f.started {
			f.after = from // a new client: from now on
		}
		f.started = true
		err = f.run(ctx, s)
		h.unsubscribe(s)
		if !errors.Is(err, errLagged) {
			return err
		}
	}
}

var errLagged = errors.New("subscriber lagged")

type follower struct {
	hub     *Hub
	after   string // the last id sent (or the client's Last-Event-ID)
	started bool
	send    func(Event) error
}

// run replays the log after f.after, then follows s until ctx ends, send
// fails, or s was dropped for lagging (errLagged).
func (f *follower) run(ctx context.Context, s *sub) error {
	for {
		events, err := f.hub.stream.Read(ctx, f.after, 500, 0)
		if err != nil {
			return fmt.Errorf("events: replay after %s: %w", f.after, err)
		}
		if len(events) == 0 {
			break
		}
		for _, ev := range events {
			if err := f.deliver(ev); err != nil {
				return err
			}
		}
	}
	if f.after != "" {
		// Nothing after the client's id: it must be the newest entry, or
		// it is one this log no longer has (a Redis that lost its data).
		last, err := f.hub.stream.Last(ctx)
		if err != nil {
			return fmt.Errorf("events: read the newest id: %w", err)
		}
		if last != f.after && !Less(f.after, last) {
			if err := f.reset(last); err != nil {
				return err
			}
			f.after = last
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-s.c:
			if !ok {
				return errLagged
			}
			if !Less(f.after, ev.ID) {
				continue // sent by the replay
			}
			if err := f.deliver(ev); err != nil {
				return err
			}
		}
	}
}

// deliver sends ev, after a reset if the log has a gap before it.
func (f *follower) deliver(ev Event) error {
	if f.after != "" && ev.Prev != f.after {
		if err := f.reset(ev.ID); err != nil {
			return err
		}
	}
	if err := f.send(ev); err != nil {
		return err
	}
	f.after = ev.ID
	return nil
}

func (f *follower) reset(next string) error {
	data := fmt.Sprintf(`{"missed_after":%q,"next":%q}`, f.after, next)
	return f.send(Event{Type: Reset, Data: []byte(data)})
}
