package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"example.com/acme/shop/lock"
	"example.com/acme/shop/notes"
)

// FencedNotes writes a note only under the live lease of the lock that
// guards it (postgres.NoteStore implements it): a lost lease is
// lock.ErrLost, and nothing is written.
type FencedNotes interface {
	UpdateFenced(ctx context.Context, id int64, in notes.Input, lease lock.Lease) (notes.Note, error)
}

// The lease of an append. appendWait bounds the wait for the lock so that
// the answer comes within the load balancer's timeout of 3 s (timeout
// server, proxy_read_timeout), the read and the write included: a busier
// note is answered 503, retry, not cut off as 504 with its outcome unknown.
// appendLeaseTTL is far longer than the read and write take (milliseconds),
// so only a holder that stalled (GC, SIGSTOP) loses its lease, and a holder
// that died holds the note at most this long.
const (
	appendWait     = 2 * time.Second
	appendLeaseTTL = 5 * time.Second
)

func (s *Server) appendRoutes() {
	if s.opts.Locks == nil || s.opts.FencedNotes == nil || s.opts.Notes == nil {
		return
	}
	s.mux.HandleFunc("POST /api/notes/{id}/append", s.appendNote)
}

// appendInput is the body of POST /api/notes/{id}/append.
type appendInput struct {
	Text string `json:"text"`
}

// appendNote is POST /api/notes/{id}/append: it adds text to the end of
// the note's body, under the lock "note:<id>", which every instance
// respects. It is the pattern to copy for work that reads, computes in Go
// and writes back, and must not run twice at once: without the lock, two
// appends that read the same body both write it back with only their own
// text, and one is lost. (This append could be one UPDATE ... SET body =
// body || $2; it stands for any computation done in application code.)
//
// Statuses: 200 and the note; 404 when there is no such note; 400 for an
// empty text or a body that would grow past notes.MaxBody; 503 busy (the
// lock was not granted within appendWait) or lock_lost (the lease ran out
// before the write, which was refused), both with Retry-After and nothing
// written, so a retry is safe. lock_lost is 503, not 409: the client's
// request is fine, the server was too slow for its lease. The append is
// not idempotent: a client that got no answer reads the note before
// sending it again.
func (s *Server) appendNote(w http.ResponseWriter, r *http.Request) {
	id, ok := noteID(w, r)
	if !ok {
		return
	}
	var in appendInput
	if err := readJSON(r, &in); err != nil {
		writeBodyError(w, r, err)
		return
	}
	if in.Text == "" {
		writeError(w, r, http.StatusBadRequest, "bad_request", "text must not be empty")
		return
	}
	ctx := r.Context()
	waitCtx, cancel := context.WithTimeout(ctx, appendWait)
	lease, err := s.opts.Locks.Acquire(waitCtx, "note:"+strconv.FormatInt(id, 10), appendLeaseTTL)
	cancel()
	if err != nil {
		appendError(w, r, id, err)
		return
	}
	// Released even when the client has gone, so the next holder need not
	// wait for the expiry; a release that fails only makes it wait.
	defer func() {
		relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := s.opts.Locks.Release(relCtx, lease); err != nil {
			logger(ctx).Warn("release lock", "lock", lease.Name, "token", lease.Token, "err", err)
		}
	}()

	// Under the lease: read, compute, write. The read is the database's,
	// never a cache's: it must see the previous holder's write.
	note, err := s.opts.Notes.Get(ctx, id)
	if err != nil {
		appendError(w, r, id, err)
		return
	}
	updated, err := s.opts.FencedNotes.UpdateFenced(ctx, id,
		notes.Input{Title: note.Title, Body: note.Body + in.Text}, lease)
	if err != nil {
		appendError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, updated)
}

// appendError answers the lock's two errors, both 503 with nothing written
// (busy: not granted within appendWait; lock_lost: the fence refused the
// write), and every other error as the notes routes do (noteError).
func appendError(w http.ResponseWriter, r *http.Request, id int64, err error) {
	var code, msg string
	switch {
	case errors.Is(err, lock.ErrTimeout):
		code, msg = "busy", fmt.Sprintf("note %d is being changed by another request; nothing was written; retry", id)
	case errors.Is(err, lock.ErrLost):
		logger(r.Context()).Warn("append refused: lease lost before the write", "note_id", id, "err", err)
		code, msg = "lock_lost", fmt.Sprintf("the lock on note %d ran out before the write; nothing was written; retry", id)
	default:
		noteError(w, r, "append", id, err)
		return
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, r, http.StatusServiceUnavailable, code, msg)
}
