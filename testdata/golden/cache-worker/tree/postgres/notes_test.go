package postgres

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"example.com/jobs/notes"
	"example.com/jobs/testsupport"
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
