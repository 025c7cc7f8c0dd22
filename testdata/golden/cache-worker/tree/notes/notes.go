// Package notes is the domain of the notes API: the Note type, the rules a
// note must follow, and the Store interface that a database implements.
// It imports no database code, so handlers and tests depend on it alone.
package notes

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Note is one note as stored and as sent to clients.
type Note struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ErrNotFound is returned by a Store when no note has the id.
var ErrNotFound = errors.New("note not found")

// ErrUnavailable is returned by a Store when a service it needs (the
// database, the cache's invalidation) cannot be reached or cannot serve
// now. Nothing was written, and the client may retry.
var ErrUnavailable = errors.New("notes unavailable: a service they need does not answer")

// ErrUnknownOutcome is returned by a Store when the database went away
// during a write's COMMIT: the write may or may not have taken effect.
var ErrUnknownOutcome = errors.New("note write interrupted during its commit: it may or may not have been written")

// ErrKeyReused is returned by CreateIdempotent when the key was already
// used to create a note from a different title or body: a client bug (one
// key for two requests), never a retry. Nothing was created.
var ErrKeyReused = errors.New("idempotency key already used for a note with a different title or body")

// ErrKeyNoteDeleted is returned by CreateIdempotent when the key already
// created a note, from the same title and body, and that note has been
// deleted since. Nothing was created: a retry of a create must not bring
// back a note that its owner deleted. The Note returned with it has the ID
// of the deleted note (and nothing else).
var ErrKeyNoteDeleted = errors.New("the note created with this idempotency key has been deleted since")

// BeforeCommit is called by a Store inside every write of a note, before
// COMMIT (before the change itself when the note's id is known, so that the
// row is not locked while it runs); done is called at the end, with false
// unless the COMMIT succeeded (a COMMIT that failed may still have taken
// effect). An error rolls the change back; the Store returns it (wrapped
// in ErrUnavailable by the cache). The cache uses it to invalidate the note
// on every instance before the change becomes visible.
type BeforeCommit func(ctx context.Context, id int64) (done func(committed bool), err error)

// Limits of a note's fields, counted in characters (runes), not bytes.
const (
	MaxTitle = 200
	MaxBody  = 10000
)

// Input is what a client sends to create or replace a note.
type Input struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// ValidationError says which field of an Input is invalid and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + " " + e.Message }

// Validate checks the input against the rules of a note. The error is a
// *ValidationError whose message names the field, fit to show the client.
func (in Input) Validate() error {
	switch n := utf8.RuneCountInString(in.Title); {
	case strings.TrimSpace(in.Title) == "":
		return &ValidationError{"title", "must not be empty"}
	case n > MaxTitle:
		return &ValidationError{"title", fmt.Sprintf("must be at most %d characters (got %d)", MaxTitle, n)}
	}
	if n := utf8.RuneCountInString(in.Body); n > MaxBody {
		return &ValidationError{"body", fmt.Sprintf("must be at most %d characters (got %d)", MaxBody, n)}
	}
	// PostgreSQL text refuses invalid UTF-8 and NUL bytes; catching them
	// here turns what would be a 500 into a 400 that names the field.
	for _, f := range []struct{ name, value string }{
		{"title", in.Title},
		{"body", in.Body},
	} {
		if !utf8.ValidString(f.value) || strings.ContainsRune(f.value, 0) {
			return &ValidationError{f.name, "must be valid UTF-8 text without NUL characters"}
		}
	}
	return nil
}

// Fingerprint identifies the request that created a note with an
// idempotency key: a replay must send the same title and body. It is a hash
// of the input, not the note, so that a replay still matches after the
// note was updated. Validated fields hold no NUL, so the separator keeps
// ("a", "bc") and ("ab", "c") apart.
func (in Input) Fingerprint() []byte {
	h := sha256.New()
	h.Write([]byte(in.Title))
	h.Write([]byte{0})
	h.Write([]byte(in.Body))
	return h.Sum(nil)
}

// Store keeps notes. Implementations are safe for concurrent use.
type Store interface {
	Create(ctx context.Context, in Input) (Note, error)
	// CreateIdempotent creates a note at most once per key (the
	// Idempotency-Key of POST /api/notes; not empty), however many times
	// and however concurrently it is called with that key: the first call
	// creates the note, every other call with the same input returns that
	// note (as it is now) with replayed true. The same key with another
	// title or body is ErrKeyReused; a key whose note was deleted since is
	// ErrKeyNoteDeleted. Keys are global, not per client: a client sends a
	// unique one (a UUID) per note it means to create.
	CreateIdempotent(ctx context.Context, key string, in Input) (n Note, replayed bool, err error)
	// Get, Update and Delete return ErrNotFound when no note has the id.
	Get(ctx context.Context, id int64) (Note, error)
	Update(ctx context.Context, id int64, in Input) (Note, error)
	Delete(ctx context.Context, id int64) error
	// List returns up to limit notes with id > after, in id order: keyset
	// pagination, so pages stay stable and cheap however deep the client
	// goes. Pass the last id of one page as after to get the next.
	List(ctx context.Context, after int64, limit int) ([]Note, error)
}
