package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/notes/notestest"
)

// memNotes is a notes.Store in memory for handler tests; the PostgreSQL
// store has its own tests against a real server.
type memNotes struct {
	mu    sync.Mutex
	next  int64
	notes map[int64]notes.Note
	fail  error // returned by every call when set

	// keys are the idempotency keys of CreateIdempotent, kept after their
	// note's delete (as deleted_note_keys keeps them); keyOf finds the key
	// of a note.
	keys  map[string]memKey
	keyOf map[int64]string

	beforeCommit notes.BeforeCommit // called as postgres.NoteStore calls it
}

// commit applies a change the way a transaction would: BeforeCommit
// first, the change only if it succeeded. Called with m.mu held.
func (m *memNotes) commit(ctx context.Context, id int64, apply func()) error {
	if m.beforeCommit == nil {
		apply()
		return nil
	}
	done, err := m.beforeCommit(ctx, id)
	if err != nil {
		return err
	}
	apply()
	done(true)
	return nil
}

// memKey is what the store remembers of an idempotency key.
type memKey struct {
	id      int64
	in      notes.Input // the input of the create, not the note now
	deleted bool
}

func newMemNotes() *memNotes {
	return &memNotes{notes: map[int64]notes.Note{}, keys: map[string]memKey{}, keyOf: map[int64]string{}}
}

func (m *memNotes) CreateIdempotent(ctx context.Context, key string, in notes.Input) (notes.Note, bool, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return notes.Note{}, false, m.fail
	}
	if k, ok := m.keys[key]; ok {
		switch {
		case k.in != in:
			return notes.Note{}, false, notes.ErrKeyReused
		case k.deleted:
			return notes.Note{ID: k.id}, false, notes.ErrKeyNoteDeleted
		}
		return m.notes[k.id], true, nil
	}
	now := time.Now().UTC()
	n := notes.Note{ID: m.next + 1, Title: in.Title, Body: in.Body, CreatedAt: now, UpdatedAt: now}
	err := m.commit(ctx, n.ID, func() {
		m.next, m.notes[n.ID] = n.ID, n
		m.keys[key], m.keyOf[n.ID] = memKey{id: n.ID, in: in}, key
	})
	return n, false, err
}

func (m *memNotes) Create(ctx context.Context, in notes.Input) (notes.Note, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return notes.Note{}, m.fail
	}
	now := time.Now().UTC()
	n := notes.Note{ID: m.next + 1, Title: in.Title, Body: in.Body, CreatedAt: now, UpdatedAt: now}
	err := m.commit(ctx, n.ID, func() { m.next, m.notes[n.ID] = n.ID, n })
	return n, err
}

func (m *memNotes) Get(_ context.Context, id int64) (notes.Note, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return notes.Note{}, m.fail
	}
	n, ok := m.notes[id]
	if !ok {
		return notes.Note{}, notes.ErrNotFound
	}
	return n, nil
}

func (m *memNotes) Update(ctx context.Context, id int64, in notes.Input) (notes.Note, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return notes.Note{}, m.fail
	}
	n, ok := m.notes[id]
	if !ok {
		return notes.Note{}, notes.ErrNotFound
	}
	n.Title, n.Body, n.UpdatedAt = in.Title, in.Body, time.Now().UTC()
	if err := m.commit(ctx, id, func() { m.notes[id] = n }); err != nil {
		return notes.Note{}, err
	}
	return n, nil
}

func (m *memNotes) Delete(ctx context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if _, ok := m.notes[id]; !ok {
		return notes.ErrNotFound
	}
	return m.commit(ctx, id, func() {
		delete(m.notes, id)
		if key, ok := m.keyOf[id]; ok {
			k := m.keys[key]
			k.deleted = true
			m.keys[key] = k
		}
	})
}

func (m *memNotes) List(_ context.Context, after int64, limit int) ([]notes.Note, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []notes.Note
	for id := after + 1; id <= m.next && len(out) < limit; id++ {
		if n, ok := m.notes[id]; ok {
			out = append(out, n)
		}
	}
	return out, nil
}

type notesEnv struct {
	t     *testing.T
	store *memNotes
	srv   *Server
	logs  *bytes.Buffer
}

func newNotesEnv(t *testing.T) *notesEnv {
	e := &notesEnv{t: t, store: newMemNotes(), logs: &bytes.Buffer{}}
	e.srv = New(Options{
		Logger:       slog.New(slog.NewJSONHandler(e.logs, nil)),
		InstanceID:   "test",
		MaxBodyBytes: 16 << 10,
		Notes:        e.store,
	})
	return e
}

// do sends a request and returns the response with its body read.
func (e *notesEnv) do(method, path, body string) (*http.Response, string) {
	e.t.Helper()
	return e.doWith(method, path, body, nil)
}

// doWith is do with request headers.
func (e *notesEnv) doWith(method, path, body string, header http.Header) (*http.Response, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec.Result(), rec.Body.String()
}

// want checks the status and, for errors, the stable error shape and code.
func (e *notesEnv) want(resp *http.Response, body string, status int, code string) {
	e.t.Helper()
	if resp.StatusCode != status {
		e.t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if code == "" {
		return
	}
	var eb errorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code != code || eb.Error.Message == "" || eb.RequestID == "" {
		e.t.Fatalf("error body %s (%v), want code %q with a message and request id", body, err, code)
	}
}

func TestNotesCRUD(t *testing.T) {
	e := newNotesEnv(t)

	resp, body := e.do("POST", "/api/notes", `{"title":"groceries","body":"milk"}`)
	e.want(resp, body, http.StatusCreated, "")
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "title", "body", "created_at", "updated_at"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("created note %s has no %q", body, k)
		}
	}
	var created notes.Note
	_ = json.Unmarshal([]byte(body), &created)
	if loc := resp.Header.Get("Location"); loc != fmt.Sprintf("/api/notes/%d", created.ID) {
		t.Errorf("Location = %q for note %d", loc, created.ID)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	path := fmt.Sprintf("/api/notes/%d", created.ID)
	resp, body = e.do("GET", path, "")
	e.want(resp, body, http.StatusOK, "")
	var got notes.Note
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Title != "groceries" || got.Body != "milk" {
		t.Fatalf("GET = %s (%v)", body, err)
	}
	if h := resp.Header.Get("X-Cache"); h != "" {
		t.Errorf("X-Cache = %q without a cache", h)
	}

	resp, body = e.do("PUT", path, `{"title":"errands","body":""}`)
	e.want(resp, body, http.StatusOK, "")
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Title != "errands" || got.ID != created.ID {
		t.Fatalf("PUT = %s (%v)", body, err)
	}

	resp, body = e.do("DELETE", path, "")
	e.want(resp, body, http.StatusNoContent, "")
	if body != "" {
		t.Errorf("DELETE body = %q, want none", body)
	}
	resp, body = e.do("GET", path, "")
	e.want(resp, body, http.StatusNotFound, "not_found")
	resp, body = e.do("DELETE", path, "")
	e.want(resp, body, http.StatusNotFound, "not_found")
	resp, body = e.do("PUT", path, `{"title":"x"}`)
	e.want(resp, body, http.StatusNotFound, "not_found")
}

func TestNotesBadRequests(t *testing.T) {
	e := newNotesEnv(t)
	e.do("POST", "/api/notes", `{"title":"exists"}`)

	for _, tc := range []struct {
		method, path, body string
		status             int
		code, mention      string
	}{
		{"POST", "/api/notes", `{"title":`, 400, "bad_request", "malformed JSON"},
		{"POST", "/api/notes", `not json`, 400, "bad_request", "malformed JSON"},
		{"POST", "/api/notes", `{"title":"a","color":"red"}`, 400, "bad_request", "color"},
		{"POST", "/api/notes", `{"title":"a"} {"title":"b"}`, 400, "bad_request", "more than one"},
		{"POST", "/api/notes", `{"title":"  "}`, 400, "bad_request", "title"},
		{"POST", "/api/notes", `{"body":"no title"}`, 400, "bad_request", "title"},
		{"POST", "/api/notes", `{"title":"` + strings.Repeat("a", 201) + `"}`, 400, "bad_request", "title"},
		{"POST", "/api/notes", `{"title":"a","body":"` + strings.Repeat("b", 10001) + `"}`, 400, "bad_request", "body"},
		{"POST", "/api/notes", `{"title":"a","body":"` + strings.Repeat("b", 20<<10) + `"}`, 413, "too_large", "bytes"},
		{"PUT", "/api/notes/1", `{"title":""}`, 400, "bad_request", "title"},
		{"PUT", "/api/notes/1", `[1]`, 400, "bad_request", "malformed JSON"},
		{"GET", "/api/notes/abc", "", 400, "bad_request", "abc"},
		{"GET", "/api/notes/0", "", 400, "bad_request", "positive"},
		{"GET", "/api/notes/-3", "", 400, "bad_request", "positive"},
		{"GET", "/api/notes/99999999999999999999", "", 400, "bad_request", "positive"},
		{"PUT", "/api/notes/x", `{"title":"a"}`, 400, "bad_request", "positive"},
		{"DELETE", "/api/notes/1.5", "", 400, "bad_request", "positive"},
		{"GET", "/api/notes/424242", "", 404, "not_found", "424242"},
		{"GET", "/api/notes?limit=0", "", 400, "bad_request", "limit"},
		{"GET", "/api/notes?limit=101", "", 400, "bad_request", "limit"},
		{"GET", "/api/notes?limit=ten", "", 400, "bad_request", "limit"},
		{"GET", "/api/notes?after=-1", "", 400, "bad_request", "after"},
		{"GET", "/api/notes?after=x", "", 400, "bad_request", "after"},
		{"PATCH", "/api/notes/1", `{}`, 405, "method_not_allowed", "PATCH"},
		// One note, one URL: no sign, no leading zero.
		{"GET", "/api/notes/+1", "", 400, "bad_request", "positive"},
		{"GET", "/api/notes/01", "", 400, "bad_request", "positive"},
		{"GET", "/api/notes?after=00", "", 400, "bad_request", "after"},
		{"GET", "/api/notes?limit=%2B5", "", 400, "bad_request", "limit"},
		// Not UTF-8: encoding/json would store U+FFFD in its place.
		{"POST", "/api/notes", "{\"title\":\"caf\xe9\"}", 400, "bad_request", "UTF-8"},
		{"PUT", "/api/notes/1", "{\"title\":\"a\",\"body\":\"\xff\xfe\"}", 400, "bad_request", "UTF-8"},
	} {
		t.Run(tc.method+" "+tc.path[:min(len(tc.path), 40)], func(t *testing.T) {
			e.t = t
			resp, body := e.do(tc.method, tc.path, tc.body)
			e.want(resp, body, tc.status, tc.code)
			if !strings.Contains(body, tc.mention) {
				t.Errorf("body %s does not mention %q", body, tc.mention)
			}
		})
	}
}

func TestNotesList(t *testing.T) {
	e := newNotesEnv(t)
	type page struct {
		Notes     []notes.Note `json:"notes"`
		NextAfter *int64       `json:"next_after"`
	}
	list := func(query string) (page, string) {
		t.Helper()
		resp, body := e.do("GET", "/api/notes"+query, "")
		e.want(resp, body, http.StatusOK, "")
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p, body
	}

	if p, body := list(""); len(p.Notes) != 0 || !strings.Contains(body, `"notes":[]`) || p.NextAfter != nil {
		t.Fatalf("empty list = %s, want notes [] without next_after", body)
	}
	for i := range 25 {
		e.do("POST", "/api/notes", fmt.Sprintf(`{"title":"n%d"}`, i))
	}
	e.do("DELETE", "/api/notes/3", "")

	// Default page size.
	if p, _ := list(""); len(p.Notes) != defaultNotesLimit || p.NextAfter == nil || *p.NextAfter != 21 {
		t.Fatalf("default page: %d notes, next_after %v; want 20 and 21", len(p.Notes), p.NextAfter)
	}
	// Walk with limit=10: 24 notes in 3 pages, the last without next_after.
	var ids []int64
	after, pages := int64(0), 0
	for {
		p, body := list(fmt.Sprintf("?after=%d&limit=10", after))
		pages++
		for _, n := range p.Notes {
			ids = append(ids, n.ID)
		}
		if p.NextAfter == nil {
			if strings.Contains(body, "next_after") {
				t.Errorf("last page %s carries next_after", body)
			}
			break
		}
		after = *p.NextAfter
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || len(ids) != 24 || ids[0] != 1 || ids[2] != 4 || ids[23] != 25 {
		t.Fatalf("%d pages, ids %v", pages, ids)
	}
	// A page that ends exactly at the last note has no next_after.
	if p, _ := list("?after=20&limit=5"); len(p.Notes) != 5 || p.NextAfter != nil {
		t.Fatalf("exact last page: %d notes, next_after %v", len(p.Notes), p.NextAfter)
	}
	if p, _ := list("?limit=100"); len(p.Notes) != 24 || p.NextAfter != nil {
		t.Fatalf("limit=100: %d notes, next_after %v", len(p.Notes), p.NextAfter)
	}
}

// A database that is down is 503 with Retry-After on every route, not 500;
// a write cut off during its COMMIT says that it may have been written.
func TestNotesStoreUnavailable(t *testing.T) {
	e := newNotesEnv(t)
	routes := []struct{ method, path, body string }{
		{"POST", "/api/notes", `{"title":"a"}`},
		{"GET", "/api/notes", ""},
		{"GET", "/api/notes/1", ""},
		{"PUT", "/api/notes/1", `{"title":"a"}`},
		{"DELETE", "/api/notes/1", ""},
	}
	for _, tc := range []struct {
		err     error
		mention string
	}{
		{fmt.Errorf("%w: dial tcp 10.0.0.5:5432: connect: connection refused", notes.ErrUnavailable), "retry"},
		{fmt.Errorf("%w: unexpected EOF", notes.ErrUnknownOutcome), "may have been written"},
	} {
		e.store.fail = tc.err
		for _, r := range routes {
			if errors.Is(tc.err, notes.ErrUnknownOutcome) && r.method == "GET" {
				continue // only a write has a commit
			}
			resp, body := e.do(r.method, r.path, r.body)
			e.want(resp, body, http.StatusServiceUnavailable, "unavailable")
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
			}
			if !strings.Contains(body, tc.mention) || strings.Contains(body, "10.0.0.5") {
				t.Errorf("%s %s: body %s, want it to say %q and not the cause", r.method, r.path, body, tc.mention)
			}
		}
	}
}

// A store failure is a 500 whose body says nothing of the cause; the cause
// is logged with the request id.
func TestNotesStoreFailureIsHidden(t *testing.T) {
	e := newNotesEnv(t)
	e.store.fail = errors.New(`ERROR: relation "notes" does not exist (SQLSTATE 42P01)`)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/notes", `{"title":"a"}`},
		{"GET", "/api/notes", ""},
		{"GET", "/api/notes/1", ""},
		{"PUT", "/api/notes/1", `{"title":"a"}`},
		{"DELETE", "/api/notes/1", ""},
	} {
		resp, body := e.do(r.method, r.path, r.body)
		e.want(resp, body, http.StatusInternalServerError, "internal")
		if strings.Contains(body, "SQLSTATE") || strings.Contains(body, "relation") {
			t.Errorf("%s %s leaks the cause: %s", r.method, r.path, body)
		}
	}
	if !strings.Contains(e.logs.String(), "SQLSTATE 42P01") || !strings.Contains(e.logs.String(), `"request_id"`) {
		t.Errorf("the cause is not logged with the request id:\n%s", e.logs)
	}
}

// The in-memory store passes the tests every notes.Store must pass.
func TestMemNotesIdempotency(t *testing.T) {
	notestest.Idempotency(t, newMemNotes())
	notestest.ConcurrentKey(t, newMemNotes(), 20)
}

// POST /api/notes with an Idempotency-Key creates one note however often it
// is sent: a retry gets the same 201, id and Location, marked as replayed.
func TestNotesIdempotencyKey(t *testing.T) {
	e := newNotesEnv(t)
	key := func(k string) http.Header { return http.Header{"Idempotency-Key": {k}} }
	const in = `{"title":"groceries","body":"milk"}`

	resp, body := e.doWith("POST", "/api/notes", in, key("8e03978e-40d5-43e8-bc93-6894a57f9324"))
	e.want(resp, body, http.StatusCreated, "")
	var first notes.Note
	if err := json.Unmarshal([]byte(body), &first); err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	if h := resp.Header.Get("Idempotent-Replayed"); h != "" {
		t.Errorf("first POST: Idempotent-Replayed = %q, want none", h)
	}
	// The draft's quoted form is the same key.
	for _, k := range []string{"8e03978e-40d5-43e8-bc93-6894a57f9324", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`} {
		resp, again := e.doWith("POST", "/api/notes", in, key(k))
		e.want(resp, again, http.StatusCreated, "")
		if again != body || resp.Header.Get("Location") != loc || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay with %s = %s, Location %q, Idempotent-Replayed %q; want %s, %q, true",
				k, again, resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed"), body, loc)
		}
	}
	if len(e.store.notes) != 1 {
		t.Fatalf("%d notes after a POST and two replays, want 1", len(e.store.notes))
	}

	// The same key for another note is a client bug: 422, nothing created.
	resp, body = e.doWith("POST", "/api/notes", `{"title":"groceries","body":"eggs"}`, key("8e03978e-40d5-43e8-bc93-6894a57f9324"))
	e.want(resp, body, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if !strings.Contains(body, "Idempotency-Key") || len(e.store.notes) != 1 {
		t.Fatalf("reuse: %s with %d notes, want a message naming the header and 1 note", body, len(e.store.notes))
	}

	// Without a key every POST creates a note.
	e.do("POST", "/api/notes", in)
	e.do("POST", "/api/notes", in)
	if len(e.store.notes) != 3 {
		t.Fatalf("%d notes after two POSTs without a key, want 3", len(e.store.notes))
	}

	// A replay after the note was deleted does not bring it back.
	e.do("DELETE", loc, "")
	resp, body = e.doWith("POST", "/api/notes", in, key("8e03978e-40d5-43e8-bc93-6894a57f9324"))
	e.want(resp, body, http.StatusConflict, "idempotency_key_note_deleted")
	if !strings.Contains(body, fmt.Sprintf("note %d", first.ID)) || len(e.store.notes) != 2 {
		t.Fatalf("replay after delete: %s with %d notes, want it to name note %d and 2 notes", body, len(e.store.notes), first.ID)
	}

	// A commit cut off is safe to retry with the key: the message says so.
	e.store.fail = fmt.Errorf("%w: unexpected EOF", notes.ErrUnknownOutcome)
	resp, body = e.doWith("POST", "/api/notes", in, key("k2"))
	e.want(resp, body, http.StatusServiceUnavailable, "unavailable")
	if !strings.Contains(body, "same Idempotency-Key") {
		t.Errorf("unknown outcome with a key: %s, want it to say to retry with the same key", body)
	}
}

// An Idempotency-Key that is not 1 to 255 bytes of the safe set is 400,
// naming the header, and creates nothing.
func TestNotesIdempotencyKeyInvalid(t *testing.T) {
	e := newNotesEnv(t)
	ok := strings.Repeat("k", 255)
	resp, body := e.doWith("POST", "/api/notes", `{"title":"a"}`, http.Header{"Idempotency-Key": {ok}})
	e.want(resp, body, http.StatusCreated, "")
	for _, h := range [][]string{
		{""},
		{`""`},
		{ok + "k"},
		{"two words"},
		{`quo"te`},
		{"<script>"},
		{"café"},
		{"line\nbreak"},
		{"a", "b"},
	} {
		resp, body := e.doWith("POST", "/api/notes", `{"title":"a"}`, http.Header{"Idempotency-Key": h})
		e.want(resp, body, http.StatusBadRequest, "bad_request")
		if !strings.Contains(body, "Idempotency-Key") || !strings.Contains(body, "255") {
			t.Errorf("key %q: %s, want a message naming the header and its rule", h, body)
		}
	}
	if len(e.store.notes) != 1 {
		t.Fatalf("%d notes, want only the one with a valid key", len(e.store.notes))
	}
}

func TestNotesRoutesNeedAStore(t *testing.T) {
	srv := New(Options{})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/api/notes", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /api/notes without a store: %d, want 404", rec.Code)
	}
}
