// Package notestest holds the tests that every notes.Store must pass, run
// by the tests of each implementation: the PostgreSQL store
// (postgres/notes_test.go) and the store in memory of the handler tests
// (httpapi/notes_test.go), so that both keep the same semantics.
package notestest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"example.com/acme/shop/notes"
)

// Idempotency checks CreateIdempotent on an empty store: a key creates one
// note, a replay returns it, a reuse with another input or after a delete
// creates nothing.
func Idempotency(t *testing.T, s notes.Store) {
	t.Helper()
	ctx := context.Background()
	in := notes.Input{Title: "groceries", Body: "milk"}

	first, replayed, err := s.CreateIdempotent(ctx, "key-1", in)
	if err != nil || replayed || first.ID <= 0 || first.Title != in.Title {
		t.Fatalf("first CreateIdempotent = %+v, %v, %v; want a new note, not replayed", first, replayed, err)
	}
	again, replayed, err := s.CreateIdempotent(ctx, "key-1", in)
	if err != nil || !replayed || again != first {
		t.Fatalf("replay = %+v, %v, %v; want %+v, replayed", again, replayed, err, first)
	}
	if _, _, err := s.CreateIdempotent(ctx, "key-1", notes.Input{Title: "groceries", Body: "eggs"}); !errors.Is(err, notes.ErrKeyReused) {
		t.Fatalf("same key, another body: err = %v, want ErrKeyReused", err)
	}
	var ve *notes.ValidationError
	if _, _, err := s.CreateIdempotent(ctx, "key-1", notes.Input{Title: " "}); !errors.As(err, &ve) {
		t.Fatalf("same key, invalid input: err = %v, want a ValidationError", err)
	}
	other, replayed, err := s.CreateIdempotent(ctx, "key-2", in)
	if err != nil || replayed || other.ID == first.ID {
		t.Fatalf("another key, same input = %+v, %v, %v; want a second note", other, replayed, err)
	}
	plain, err := s.Create(ctx, in)
	if err != nil || plain.ID == first.ID || plain.ID == other.ID {
		t.Fatalf("Create without a key = %+v, %v; want a third note", plain, err)
	}

	// The key matches the request, not the note: a replay after an update
	// still returns the note, as it is now.
	updated, err := s.Update(ctx, first.ID, notes.Input{Title: "errands"})
	if err != nil {
		t.Fatal(err)
	}
	again, replayed, err = s.CreateIdempotent(ctx, "key-1", in)
	if err != nil || !replayed || again != updated {
		t.Fatalf("replay after an update = %+v, %v, %v; want %+v, replayed", again, replayed, err, updated)
	}

	// A replay after the delete creates nothing.
	if err := s.Delete(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	gone, _, err := s.CreateIdempotent(ctx, "key-1", in)
	if !errors.Is(err, notes.ErrKeyNoteDeleted) || gone.ID != first.ID {
		t.Fatalf("replay after the delete = %+v, %v; want ErrKeyNoteDeleted with id %d", gone, err, first.ID)
	}
	if _, _, err := s.CreateIdempotent(ctx, "key-1", notes.Input{Title: "other"}); !errors.Is(err, notes.ErrKeyReused) {
		t.Fatalf("deleted key, another input: err = %v, want ErrKeyReused", err)
	}
	list, err := s.List(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != other.ID || list[1].ID != plain.ID {
		t.Fatalf("notes %+v, want only %d and %d", list, other.ID, plain.ID)
	}
}

// ConcurrentKey calls CreateIdempotent with one key from n goroutines at
// once, on an empty store: exactly one creates the note, all return it.
func ConcurrentKey(t *testing.T, s notes.Store, n int) {
	t.Helper()
	ctx := context.Background()
	in := notes.Input{Title: "once", Body: "however many ask"}
	type result struct {
		note     notes.Note
		replayed bool
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			r := &results[i]
			r.note, r.replayed, r.err = s.CreateIdempotent(ctx, "concurrent-key", in)
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if r.note != results[0].note {
			t.Errorf("call %d returned %+v, call 0 %+v", i, r.note, results[0].note)
		}
		if !r.replayed {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d calls created the note, want 1", created)
	}
	list, err := s.List(ctx, 0, n+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d notes after %d concurrent creates with one key, want 1: %s", len(list), n, fmt.Sprint(list))
	}
}
