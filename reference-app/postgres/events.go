package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/realtime"
)

// NoteChange reads a note's version and its state as committed now, in one
// statement (one snapshot, so the state is that of the version), for the
// realtime feature's events (realtime.ReadChange). A deleted note has its
// version and no state; ok is false for an id that no write committed.
func (s *NoteStore) NoteChange(ctx context.Context, id int64) (realtime.Change, bool, error) {
	var (
		c                    = realtime.Change{NoteID: id}
		noteID               *int64
		title, body          *string
		createdAt, updatedAt *time.Time
	)
	err := s.pool.QueryRow(ctx,
		`SELECT v.version, n.id, n.title, n.body, n.created_at, n.updated_at
		 FROM note_versions v LEFT JOIN notes n ON n.id = v.note_id
		 WHERE v.note_id = $1`, id).
		Scan(&c.Version, &noteID, &title, &body, &createdAt, &updatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return realtime.Change{}, false, nil
	}
	if err != nil {
		return realtime.Change{}, false, fmt.Errorf("read the change of note %d: %w", id, classify(err))
	}
	if noteID != nil {
		c.Note = &notes.Note{ID: *noteID, Title: *title, Body: *body,
			CreatedAt: createdAt.UTC(), UpdatedAt: updatedAt.UTC()}
	}
	return c, true, nil
}
