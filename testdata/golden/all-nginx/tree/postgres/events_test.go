package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/realtime"
	"example.com/acme/shop/redis"
	"example.com/acme/shop/testsupport"
)

// TestNoteChangeVersions: every committed write of a note bumps its
// version; a delete keeps one, without the state.
func TestNoteChangeVersions(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	if _, ok, err := s.NoteChange(ctx, 12345); ok || err != nil {
		t.Fatalf("NoteChange of no note = %v, %v; want not ok", ok, err)
	}
	n, err := s.Create(ctx, notes.Input{Title: "t", Body: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	want := func(version int64, body string) {
		t.Helper()
		c, ok, err := s.NoteChange(ctx, n.ID)
		switch {
		case err != nil || !ok:
			t.Fatalf("NoteChange = %v, %v", ok, err)
		case c.Version != version:
			t.Errorf("version %d, want %d", c.Version, version)
		case body == "" && c.Note != nil, body != "" && (c.Note == nil || c.Note.Body != body):
			t.Errorf("version %d: note %+v, want body %q", version, c.Note, body)
		}
	}
	want(1, "v1")
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "t", Body: "v2"}); err != nil {
		t.Fatal(err)
	}
	want(2, "v2")
	if _, err := s.Update(ctx, n.ID+1000, notes.Input{Title: "t", Body: "none"}); !errors.Is(err, notes.ErrNotFound) {
		t.Fatalf("update of no note: %v", err)
	}
	if err := s.Delete(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	want(3, "")
}

// TestEventsFollowCommitOrderUnderRaces: writes of a few notes race from
// many goroutines (as from many instances), and each write's publish is
// delayed at random after its COMMIT, so that publishes arrive in any
// order. The log must still hold each note's events in increasing version,
// and its last event must be the note's final state.
func TestEventsFollowCommitOrderUnderRaces(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stream, err := redis.NewEvents(redis.EventsOptions{URL: testsupport.Redis(t).URL, Prefix: "race", MaxLen: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	// Each goroutine is an instance: its own store and hook.
	const instances, noteCount, writes = 6, 3, 30
	stores := make([]*NoteStore, instances)
	for i := range stores {
		s := NewNoteStore(db)
		delayed := func(ctx context.Context, id int64) (func(bool), error) {
			return func(bool) { time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) }, nil
		}
		// The delay runs before the publish: Publish calls the hook it
		// wraps first.
		s.BeforeCommit = realtime.Publish(delayed, s.NoteChange, stream, log)
		stores[i] = s
	}
	ids := make([]int64, noteCount)
	for i := range ids {
		n, err := stores[0].Create(ctx, notes.Input{Title: "race", Body: "0"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = n.ID
	}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range writes {
				id := ids[(i+w)%noteCount]
				if _, err := s.Update(ctx, id, notes.Input{Title: "race", Body: fmt.Sprintf("%d-%d", i, w)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()

	events, err := stream.Read(ctx, "", 100000, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := map[int64]realtime.Change{}
	for _, ev := range events {
		var c realtime.Change
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.Version <= last[c.NoteID].Version {
			t.Errorf("note %d: version %d after %d in the log", c.NoteID, c.Version, last[c.NoteID].Version)
		}
		last[c.NoteID] = c
	}
	for _, id := range ids {
		n, err := stores[0].Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c, _, _ := stores[0].NoteChange(ctx, id)
		if got := last[id]; got.Version != c.Version || got.Note == nil || got.Note.Body != n.Body {
			t.Errorf("note %d: last event version %d %+v, want version %d body %q", id, got.Version, got.Note, c.Version, n.Body)
		}
	}
	t.Logf("%d events for %d writes (racing writes may share one)", len(events), noteCount+instances*writes)
}
