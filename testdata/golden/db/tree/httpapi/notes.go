package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"example.com/acme/notes/notes"
)

// Page sizes of GET /api/notes.
const (
	defaultNotesLimit = 20
	maxNotesLimit     = 100
)

func (s *Server) notesRoutes() {
	if s.opts.Notes == nil {
		return
	}
	s.mux.HandleFunc("POST /api/notes", s.createNote)
	s.mux.HandleFunc("GET /api/notes", s.listNotes)
	s.mux.HandleFunc("GET /api/notes/{id}", s.getNote)
	s.mux.HandleFunc("PUT /api/notes/{id}", s.updateNote)
	s.mux.HandleFunc("DELETE /api/notes/{id}", s.deleteNote)
}

// maxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const maxIdempotencyKey = 255

// createNote is POST /api/notes. With an Idempotency-Key header (the IETF
// draft "The Idempotency-Key HTTP Header Field") it creates at most one
// note per key: a retry with the same key and the same title and body
// answers what the first request answered (201, the note, its Location)
// plus Idempotent-Replayed: true, and creates nothing. That makes the
// POST safe to resend - by a client that got no answer, and by the load
// balancer when the connection to an instance that was going away broke
// after the request was sent (it adds a key to every request). The same
// key with another title or body is 422 idempotency_key_reused; a key whose
// note was deleted since is 409 idempotency_key_note_deleted (nothing is
// created: a late retry must not bring a deleted note back).
func (s *Server) createNote(w http.ResponseWriter, r *http.Request) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	in, ok := readNoteInput(w, r)
	if !ok {
		return
	}
	var (
		note     notes.Note
		replayed bool
		err      error
	)
	if key == "" {
		note, err = s.opts.Notes.Create(r.Context(), in)
	} else {
		note, replayed, err = s.opts.Notes.CreateIdempotent(r.Context(), key, in)
	}
	switch {
	case errors.Is(err, notes.ErrKeyReused):
		writeError(w, r, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key already created a note with a different title or body; "+
				"send a new key (a UUID) for each note to create, and the same key only to retry the same request")
		return
	case errors.Is(err, notes.ErrKeyNoteDeleted):
		writeError(w, r, http.StatusConflict, "idempotency_key_note_deleted",
			fmt.Sprintf("note %d, which this Idempotency-Key created, has been deleted since; nothing was created; "+
				"send a new key to create the note again", note.ID))
		return
	case key != "" && errors.Is(err, notes.ErrUnknownOutcome):
		logger(r.Context()).Error("note write interrupted during its commit", "op", "create", "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, "unavailable",
			"the database went away during the commit: the note may have been written; "+
				"retry with the same Idempotency-Key, which creates it at most once")
		return
	case err != nil:
		noteError(w, r, "create", 0, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", fmt.Sprintf("/api/notes/%d", note.ID))
	writeJSON(w, http.StatusCreated, note)
}

// idempotencyKey returns the Idempotency-Key of the request, "" when it has
// none, answering 400 itself when the key is not acceptable: one header of
// 1 to 255 bytes from the safe set of X-Request-ID (letters, digits and
// ._~:/+=@-). The draft's own form, a quoted string ("key"), is the same
// key as the bare one.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	values, sent := r.Header["Idempotency-Key"]
	if !sent {
		return "", true
	}
	key := ""
	if len(values) == 1 {
		key = values[0]
		if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
			key = key[1 : len(key)-1]
		}
	}
	if len(values) != 1 || !safeToken(key, maxIdempotencyKey) {
		writeError(w, r, http.StatusBadRequest, "bad_request", fmt.Sprintf(
			"invalid Idempotency-Key header: send one, of 1 to %d characters among letters, digits and ._~:/+=@- (a UUID will do)",
			maxIdempotencyKey))
		return "", false
	}
	return key, true
}

// notePage is one page of GET /api/notes. NextAfter is the after value of
// the next page, omitted on the last one.
type notePage struct {
	Notes     []notes.Note `json:"notes"`
	NextAfter int64        `json:"next_after,omitempty"`
}

func (s *Server) listNotes(w http.ResponseWriter, r *http.Request) {
	after, err := queryInt(r, "after", 0, 0, math.MaxInt64)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	limit, err := queryInt(r, "limit", defaultNotesLimit, 1, maxNotesLimit)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// One more than asked tells whether a next page exists without a
	// count(*) or a last empty page.
	list, err := s.opts.Notes.List(r.Context(), after, int(limit)+1)
	if err != nil {
		noteError(w, r, "list", 0, err)
		return
	}
	page := notePage{Notes: list}
	if len(list) > int(limit) {
		page.Notes = list[:limit]
		page.NextAfter = page.Notes[limit-1].ID
	}
	if page.Notes == nil {
		page.Notes = []notes.Note{} // [] rather than null
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getNote(w http.ResponseWriter, r *http.Request) {
	id, ok := noteID(w, r)
	if !ok {
		return
	}
	note, err := s.opts.Notes.Get(r.Context(), id)
	if err != nil {
		noteError(w, r, "get", id, err)
		return
	}
	writeJSON(w, http.StatusOK, note)
}

func (s *Server) updateNote(w http.ResponseWriter, r *http.Request) {
	id, ok := noteID(w, r)
	if !ok {
		return
	}
	in, ok := readNoteInput(w, r)
	if !ok {
		return
	}
	note, err := s.opts.Notes.Update(r.Context(), id, in)
	if err != nil {
		noteError(w, r, "update", id, err)
		return
	}
	writeJSON(w, http.StatusOK, note)
}

func (s *Server) deleteNote(w http.ResponseWriter, r *http.Request) {
	id, ok := noteID(w, r)
	if !ok {
		return
	}
	err := s.opts.Notes.Delete(r.Context(), id)
	if err != nil {
		noteError(w, r, "delete", id, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readNoteInput decodes and validates a note body, answering 400 or 413
// itself when it is not acceptable.
func readNoteInput(w http.ResponseWriter, r *http.Request) (notes.Input, bool) {
	var in notes.Input
	if err := readJSON(r, &in); err != nil {
		writeBodyError(w, r, err)
		return in, false
	}
	if err := in.Validate(); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return in, false
	}
	return in, true
}

// noteID parses the {id} of the path, answering 400 when it is not a
// positive whole number written plainly (not "+5" or "05": one note, one
// URL).
func noteID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := parseWhole(r.PathValue("id"))
	if err != nil || id <= 0 {
		writeError(w, r, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("note id %q: want a positive whole number", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

// queryInt reads an optional whole-number query parameter within [min, max].
func queryInt(r *http.Request, name string, def, min, max int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := parseWhole(v)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("query parameter %s=%q: want a whole number from %d to %d", name, v, min, max)
	}
	return n, nil
}

// parseWhole parses a whole number in its one plain form: digits, a minus
// sign for a negative one, no sign or leading zero otherwise.
func parseWhole(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("%q is not a plain whole number", s)
	}
	return n, err
}

// noteError answers a store error: 404 for a missing note, 400 for input
// the store refused, and otherwise 500 with the cause logged but never
// shown, since it may hold SQL or connection details.
func noteError(w http.ResponseWriter, r *http.Request, op string, id int64, err error) {
	var invalid *notes.ValidationError
	switch {
	case errors.Is(err, notes.ErrNotFound):
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("note %d not found", id))
	case errors.As(err, &invalid):
		writeError(w, r, http.StatusBadRequest, "bad_request", invalid.Error())
	case errors.Is(err, notes.ErrUnavailable):
		// Nothing was written, so retrying is safe.
		logger(r.Context()).Warn("notes unavailable", "op", op, "note_id", id, "err", err)
		w.Header().Set("Retry-After", "1")
		msg := "notes are unavailable right now; retry"
		if op != "get" && op != "list" {
			msg = "the note was not written; retry"
		}
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", msg)
	case errors.Is(err, notes.ErrUnknownOutcome):
		logger(r.Context()).Error("note write interrupted during its commit", "op", op, "note_id", id, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, "unavailable",
			"the database went away during the commit: the note may have been written; read it before retrying")
	default:
		logger(r.Context()).Error("notes store failed", "op", op, "note_id", id, "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "internal error")
	}
}
