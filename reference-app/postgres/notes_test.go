package postgres

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/notes/notestest"
	"example.com/acme/shop/testsupport"
)

// openTestDB opens a pool on a fresh, migrated database.
func openTestDB(t *testing.T) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, testsupport.Postgres(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestNoteStoreCRUD(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))

	created, err := s.Create(ctx, notes.Input{Title: "groceries", Body: "milk, 'eggs'; DROP TABLE notes; --"})
	if err != nil {
		t.Fatal(err)
	}
	if created.ID <= 0 || created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("created = %+v, want an id and equal timestamps", created)
	}

	got, err := s.Get(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != created {
		t.Fatalf("Get = %+v, want %+v", got, created)
	}

	time.Sleep(2 * time.Millisecond) // updated_at must move forward
	updated, err := s.Update(ctx, created.ID, notes.Input{Title: "errands", Body: ""})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Title != "errands" || updated.Body != "" || !updated.CreatedAt.Equal(created.CreatedAt) ||
		!updated.UpdatedAt.After(created.UpdatedAt) {
		t.Fatalf("updated = %+v, created = %+v", updated, created)
	}

	if err := s.Delete(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, created.ID); !errors.Is(err, notes.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
}

func TestNoteStoreNotFound(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	const missing = 424242
	if _, err := s.Get(ctx, missing); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Get: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, missing, notes.Input{Title: "x"}); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Update: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, missing); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Delete: err = %v, want ErrNotFound", err)
	}
}

func TestNoteStoreRejectsInvalidInput(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	var ve *notes.ValidationError
	if _, err := s.Create(ctx, notes.Input{Title: " "}); !errors.As(err, &ve) {
		t.Errorf("Create blank title: err = %v, want a ValidationError", err)
	}
	if _, err := s.Update(ctx, 1, notes.Input{Title: "ok", Body: "\x00"}); !errors.As(err, &ve) {
		t.Errorf("Update NUL body: err = %v, want a ValidationError", err)
	}
}

func TestNoteStoreListPages(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))

	if list, err := s.List(ctx, 0, 10); err != nil || len(list) != 0 {
		t.Fatalf("List on empty table = %v, %v; want no notes", list, err)
	}
	var ids []int64
	for i := range 7 {
		n, err := s.Create(ctx, notes.Input{Title: string(rune('a' + i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.ID)
	}
	// A deleted note leaves a gap that pagination must step over.
	if err := s.Delete(ctx, ids[3]); err != nil {
		t.Fatal(err)
	}
	want := []int64{ids[0], ids[1], ids[2], ids[4], ids[5], ids[6]}

	var got []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page, err := s.List(ctx, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page {
			got = append(got, n.ID)
		}
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(got) != len(want) {
		t.Fatalf("ids over all pages = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ids over all pages = %v, want %v", got, want)
		}
	}
	if page, err := s.List(ctx, ids[6], 4); err != nil || len(page) != 0 {
		t.Fatalf("List after the last id = %v, %v; want empty", page, err)
	}
}

// The PostgreSQL store passes the tests every notes.Store must pass; the
// concurrent one is the unique index at work: 20 transactions insert the
// same key at once and one note exists.
func TestNoteStoreIdempotency(t *testing.T) {
	notestest.Idempotency(t, NewNoteStore(openTestDB(t)))
	notestest.ConcurrentKey(t, NewNoteStore(openTestDB(t)), 20)
}

// A replay whose INSERT waits for the DELETE of the key's note (the row is
// locked until that transaction ends) inserts once the DELETE commits; the
// check that follows it sees the key in deleted_note_keys and rolls the
// insert back: the deleted note does not come back.
func TestNoteStoreReplayRacesDelete(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	s := NewNoteStore(db)
	in := notes.Input{Title: "soon gone"}
	n, _, err := s.CreateIdempotent(ctx, "race", in)
	if err != nil {
		t.Fatal(err)
	}
	// The delete, held open after its statement (a writer paused before
	// its COMMIT): the note's row stays locked until it ends.
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, deleteNote, n.ID, deletedKeyRetention.Seconds()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   notes.Note
		err error
	}
	replay := make(chan result, 1)
	go func() {
		n, _, err := s.CreateIdempotent(ctx, "race", in)
		replay <- result{n, err}
	}()
	// Wait until the replay's INSERT waits for the DELETE.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO notes%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the replay's INSERT does not wait for the DELETE")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-replay
	if !errors.Is(r.err, notes.ErrKeyNoteDeleted) || r.n.ID != n.ID {
		t.Fatalf("replay during the delete = %+v, %v; want ErrKeyNoteDeleted for note %d", r.n, r.err, n.ID)
	}
	if list, _ := s.List(ctx, 0, 10); len(list) != 0 {
		t.Fatalf("notes after the delete and its racing replay: %+v, want none", list)
	}
}

// The key of a deleted note is kept deletedKeyRetention, then purged by a
// later delete: past that, the key creates a new note.
func TestNoteStoreDeletedKeyPurged(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	s := NewNoteStore(db)
	in := notes.Input{Title: "old"}
	n, _, err := s.CreateIdempotent(ctx, "old-key", in)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE deleted_note_keys SET deleted_at = now() - $1 * interval '1 second' - interval '1 minute'`,
		deletedKeyRetention.Seconds()); err != nil {
		t.Fatal(err)
	}
	other, err := s.Create(ctx, notes.Input{Title: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, other.ID); err != nil { // purges
		t.Fatal(err)
	}
	again, replayed, err := s.CreateIdempotent(ctx, "old-key", in)
	if err != nil || replayed || again.ID == n.ID {
		t.Fatalf("CreateIdempotent with a purged key = %+v, %v, %v; want a new note", again, replayed, err)
	}
}

// BeforeCommit runs inside the write: when it fails the change is rolled
// back, and when it succeeds done learns whether the COMMIT did.
func TestNoteStoreBeforeCommit(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	n, err := s.Create(ctx, notes.Input{Title: "one"})
	if err != nil {
		t.Fatal(err)
	}
	errDown := errors.New("cache down")
	var calls []int64
	var committed []bool
	s.BeforeCommit = func(ctx context.Context, id int64) (func(bool), error) {
		calls = append(calls, id)
		return nil, errDown
	}
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "two"}); !errors.Is(err, errDown) {
		t.Fatalf("Update with a failing BeforeCommit: %v, want the hook's error", err)
	}
	if err := s.Delete(ctx, n.ID); !errors.Is(err, errDown) {
		t.Fatalf("Delete with a failing BeforeCommit: %v, want the hook's error", err)
	}
	if _, err := s.Create(ctx, notes.Input{Title: "new"}); !errors.Is(err, errDown) {
		t.Fatalf("Create with a failing BeforeCommit: %v, want the hook's error", err)
	}
	if got, err := s.Get(ctx, n.ID); err != nil || got.Title != "one" {
		t.Fatalf("after refused writes: %+v %v, want the note unchanged", got, err)
	}
	if list, _ := s.List(ctx, 0, 10); len(list) != 1 {
		t.Fatalf("after a refused create: %d notes, want 1", len(list))
	}
	if len(calls) != 3 || calls[0] != n.ID || calls[1] != n.ID {
		t.Fatalf("BeforeCommit called with %v", calls)
	}
	// It runs before the change, so the row is not locked while it waits
	// (for the acks of every instance): another write could take the lock.
	var locked error
	s.BeforeCommit = func(ctx context.Context, id int64) (func(bool), error) {
		locked = rowLocked(ctx, s, id)
		return func(ok bool) { committed = append(committed, ok) }, nil
	}
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "two"}); err != nil {
		t.Fatal(err)
	}
	if locked != nil {
		t.Fatalf("BeforeCommit of an update ran while the note's row was locked: %v", locked)
	}
	if len(committed) != 1 || !committed[0] {
		t.Fatalf("done got %v, want [true]", committed)
	}
}

// rowLocked returns an error when another transaction holds the lock of
// note id's row.
func rowLocked(ctx context.Context, s *NoteStore, id int64) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM notes WHERE id = $1 FOR UPDATE NOWAIT`, id)
	return err
}

// A write waits at most writeLockTimeout for its row; then it changes
// nothing and says the database is busy (503, retry), well within the load
// balancer's timeout, rather than queueing without bound.
func TestNoteStoreBusyRowFailsFast(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	s := NewNoteStore(db)
	n, err := s.Create(ctx, notes.Input{Title: "one"})
	if err != nil {
		t.Fatal(err)
	}
	var committed []bool
	s.BeforeCommit = func(ctx context.Context, id int64) (func(bool), error) {
		return func(ok bool) { committed = append(committed, ok) }, nil
	}
	holder, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT 1 FROM notes WHERE id = $1 FOR UPDATE`, n.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Update(ctx, n.ID, notes.Input{Title: "two"})
	took := time.Since(start)
	if !errors.Is(err, notes.ErrUnavailable) {
		t.Fatalf("Update of a locked row: %v, want notes.ErrUnavailable", err)
	}
	if took < writeLockTimeout || took > writeLockTimeout+time.Second {
		t.Errorf("Update of a locked row failed after %v, want about %v", took, writeLockTimeout)
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, n.ID); err != nil || got.Title != "one" {
		t.Fatalf("after the refused write: %+v %v, want the note unchanged", got, err)
	}
	if len(committed) != 1 || committed[0] {
		t.Fatalf("done got %v, want [false]", committed)
	}
}

// The fence the cache relies on: a writer that stalls between BeforeCommit
// and COMMIT (a GC pause, SIGSTOP) for longer than writeIdleTimeout has its
// transaction ended by PostgreSQL itself; the change never becomes visible.
func TestNoteStoreStalledWriteIsRolledBack(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	n, err := s.Create(ctx, notes.Input{Title: "one"})
	if err != nil {
		t.Fatal(err)
	}
	var committed []bool
	s.BeforeCommit = func(ctx context.Context, id int64) (func(bool), error) {
		time.Sleep(writeIdleTimeout + 500*time.Millisecond) // the pause
		return func(ok bool) { committed = append(committed, ok) }, nil
	}
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "late"}); err == nil {
		t.Fatal("a write that stalled past the fence committed")
	}
	s.BeforeCommit = nil
	if got, err := s.Get(ctx, n.ID); err != nil || got.Title != "one" {
		t.Fatalf("after the stalled write: %+v %v, want the note unchanged", got, err)
	}
	if len(committed) != 1 || committed[0] {
		t.Fatalf("done got %v, want [false]", committed)
	}
}

// The database going away is not an internal error: every operation of the
// store says notes.ErrUnavailable (the API answers 503 with Retry-After),
// whether its connections were reset under it or the server refuses new
// ones. Before, these came back as plain errors and the API answered 500.
func TestNoteStoreDatabaseDown(t *testing.T) {
	ctx := context.Background()
	direct := testsupport.Postgres(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	p := testsupport.NewFaultProxy(t, u.Host)
	u.Host = p.Addr
	db, err := Open(ctx, u.String(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	s := NewNoteStore(db)
	n, err := s.Create(ctx, notes.Input{Title: "before"})
	if err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { _, err := s.Create(ctx, notes.Input{Title: "x"}); return err }},
		{"create with a key", func() error { _, _, err := s.CreateIdempotent(ctx, "k", notes.Input{Title: "x"}); return err }},
		{"get", func() error { _, err := s.Get(ctx, n.ID); return err }},
		{"list", func() error { _, err := s.List(ctx, 0, 10); return err }},
		{"update", func() error { _, err := s.Update(ctx, n.ID, notes.Input{Title: "y"}); return err }},
		{"delete", func() error { return s.Delete(ctx, n.ID) }},
	}
	p.Reset() // the pooled connections die under the store
	for _, op := range ops {
		if err := op.do(); err != nil && !errors.Is(err, notes.ErrUnavailable) {
			t.Errorf("%s after a reset: %v, want nil or notes.ErrUnavailable", op.name, err)
		}
	}
	p.Close() // and the server refuses new ones
	for _, op := range ops {
		if err := op.do(); !errors.Is(err, notes.ErrUnavailable) {
			t.Errorf("%s with the database refusing connections: %v, want notes.ErrUnavailable", op.name, err)
		}
	}
}
