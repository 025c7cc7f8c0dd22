// Package realtime pushes the changes of notes to clients, whichever
// instance they are connected to.
//
// Every committed write of a note is published, after its COMMIT, to one
// event log that all instances share (Stream: a Redis Stream, see
// redis/events.go). Each instance reads the log in one loop (Hub) and hands
// each event to its subscribers: the open GET /api/events streams.
//
// # The invariant
//
// For each note, a subscriber receives the note's events in the order its
// writes committed, and misses none that is still in the log; an event it
// cannot get any more is never skipped in silence: it gets a reset event
// first, which tells it to load the state again.
//
// Why per note in commit order: each write bumps the note's version in the
// same transaction (a trigger, migration 00008), under the note's row lock,
// so versions of one note grow in commit order. After COMMIT the writer
// reads the note's version and state as committed now and publishes them;
// the log refuses an event whose version is not greater than the last one
// published for that note (Stream.Publish, one atomic script). Two writes
// of one note that race may so publish one event with the newer state
// only: an intermediate state may be skipped, never shown after a newer one.
//
// Why nothing is missed in silence: every entry of the log names the entry
// before it (Event.Prev). A subscriber that is handed an event whose Prev is
// not the last id it sent (entries were trimmed past the retention, or Redis
// lost them) first gets a reset.
package realtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"example.com/acme/shop/notes"
)

// The types of events. A reset has no note: it says that events were
// missed, and that the client must load the notes again.
const (
	Created = "note.created"
	Updated = "note.updated"
	Deleted = "note.deleted"
	Reset   = "reset"
)

// Event is one entry of the log, as sent to clients.
type Event struct {
	ID   string // the entry's id in the log, the SSE id: "<ms>-<seq>"
	Prev string // the id of the entry before it in the log ("0-0" for the first)
	Type string
	Data []byte // JSON: Change
}

// Change is a note's state as committed at some version: the data of an
// event of a note.
type Change struct {
	NoteID  int64       `json:"id"`
	Version int64       `json:"version"`
	Note    *notes.Note `json:"note,omitempty"` // nil: deleted
}

// Type is the event type of the change: the first version is the note's
// creation.
func (c Change) Type() string {
	switch {
	case c.Note == nil:
		return Deleted
	case c.Version == 1:
		return Created
	}
	return Updated
}

// Stream is the log shared by every instance.
type Stream interface {
	// Publish appends the change unless a change of the same note with
	// this version or a later one was published already (then false).
	Publish(ctx context.Context, c Change) (bool, error)
	// Read returns up to count events after the id ("0-0" for the start),
	// in order. With block > 0 it waits up to that long for one.
	Read(ctx context.Context, after string, count int, block time.Duration) ([]Event, error)
	// Last returns the id of the newest event ("0-0" when there is none:
	// the position before the first event).
	Last(ctx context.Context) (string, error)
}

// ErrBadID is returned by ParseID.
var ErrBadID = errors.New("not an event id")

// ID is an event id: milliseconds and a sequence number.
type ID struct{ Ms, Seq uint64 }

// ParseID reads an id as "<ms>-<seq>", as the log writes them.
func ParseID(s string) (ID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseUint(ms, 10, 64)
	b, errB := strconv.ParseUint(seq, 10, 64)
	if !ok || errA != nil || errB != nil {
		return ID{}, fmt.Errorf("%q: %w", s, ErrBadID)
	}
	return ID{a, b}, nil
}

// Less reports whether id a comes before b in the log.
func Less(a, b string) bool {
	x, errX := ParseID(a)
	y, errY := ParseID(b)
	if errX != nil || errY != nil {
		return a < b // ids come from the log; this does not happen
	}
	return x.Ms < y.Ms || x.Ms == y.Ms && x.Seq < y.Seq
}
