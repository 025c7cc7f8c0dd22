package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/lock"
	"example.com/acme/shop/notes"
	"example.com/acme/shop/postgres"
	"example.com/acme/shop/testsupport"
)

// TestMain stops the PostgreSQL server the append tests share.
func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }

// appendEnv is the server with the lock and the notes on a fresh, migrated
// database.
type appendEnv struct {
	srv    *httpapi.Server
	locker *postgres.Locker
	store  *postgres.NoteStore
}

func newAppendEnv(t *testing.T, wrap func(lock.Locker) lock.Locker) appendEnv {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, testsupport.Postgres(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	e := appendEnv{locker: postgres.NewLocker(db), store: postgres.NewNoteStore(db)}
	var locks lock.Locker = e.locker
	if wrap != nil {
		locks = wrap(locks)
	}
	e.srv = httpapi.New(httpapi.Options{Notes: e.store, Locks: locks, FencedNotes: e.store})
	return e
}

func (e appendEnv) post(t *testing.T, path, body string) (*http.Response, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("POST %s: not JSON: %q", path, rec.Body.String())
	}
	return rec.Result(), got
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestAppendRoute(t *testing.T) {
	ctx := context.Background()
	e := newAppendEnv(t, nil)
	n, err := e.store.Create(ctx, notes.Input{Title: "t", Body: "a"})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/notes/%d/append", n.ID)

	resp, body := e.post(t, path, `{"text": "b"}`)
	if resp.StatusCode != 200 || body["body"] != "ab" {
		t.Fatalf("append: %d %v, want 200 and body %q", resp.StatusCode, body, "ab")
	}
	for _, c := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/api/notes/999999/append", `{"text": "b"}`, 404, "not_found"},
		{"/api/notes/x/append", `{"text": "b"}`, 400, "bad_request"},
		{path, `{"text": ""}`, 400, "bad_request"},
		{path, `{"txt": "b"}`, 400, "bad_request"},
		{path, `{"text": "` + strings.Repeat("x", notes.MaxBody) + `"}`, 400, "bad_request"}, // past the body's limit
	} {
		resp, body := e.post(t, c.path, c.body)
		if resp.StatusCode != c.status || errorCode(body) != c.code {
			t.Errorf("POST %s %.40s: %d %v, want %d %s", c.path, c.body, resp.StatusCode, body, c.status, c.code)
		}
	}

	// Another holder keeps the lock: 503 busy after the wait, nothing written.
	held, err := e.locker.Acquire(ctx, fmt.Sprintf("note:%d", n.ID), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, body = e.post(t, path, `{"text": "c"}`)
	took := time.Since(start)
	if resp.StatusCode != 503 || errorCode(body) != "busy" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("append while locked: %d %v Retry-After %q, want 503 busy with Retry-After 1", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if took < 2*time.Second || took > 3*time.Second {
		t.Errorf("busy answered after %v, want after the 2s wait, within the load balancer's 3s", took)
	}
	if err := e.locker.Release(ctx, held); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Get(ctx, n.ID); err != nil || got.Body != "ab" {
		t.Fatalf("after the refused appends: %+v %v, want body %q", got, err, "ab")
	}
	// Released by the route: the next append is granted at once.
	if resp, body := e.post(t, path, `{"text": "d"}`); resp.StatusCode != 200 || body["body"] != "abd" {
		t.Fatalf("append after Release: %d %v", resp.StatusCode, body)
	}
}

// staleLocker hands out a lease that another grant has replaced already, as
// a holder paused past its ttl would hold: the route's write must be
// refused by the fence (503 lock_lost) and change nothing.
type staleLocker struct{ lock.Locker }

func (s staleLocker) Acquire(ctx context.Context, name string, ttl time.Duration) (lock.Lease, error) {
	stale, err := s.Locker.Acquire(ctx, name, ttl)
	if err != nil {
		return stale, err
	}
	if err := s.Locker.Release(ctx, stale); err != nil {
		return stale, err
	}
	if _, err := s.Locker.Acquire(ctx, name, ttl); err != nil { // the new holder, kept
		return stale, err
	}
	return stale, nil
}

func TestAppendRouteLockLost(t *testing.T) {
	ctx := context.Background()
	e := newAppendEnv(t, func(l lock.Locker) lock.Locker { return staleLocker{l} })
	n, err := e.store.Create(ctx, notes.Input{Title: "t", Body: "a"})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.post(t, fmt.Sprintf("/api/notes/%d/append", n.ID), `{"text": "b"}`)
	if resp.StatusCode != 503 || errorCode(body) != "lock_lost" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("append under a stale lease: %d %v, want 503 lock_lost with Retry-After", resp.StatusCode, body)
	}
	if got, err := e.store.Get(ctx, n.ID); err != nil || got.Body != "a" {
		t.Fatalf("after the fenced append: %+v %v, want body %q", got, err, "a")
	}
}
