package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/acme/notes/notes"
)

// NoteStore keeps notes in the notes table. Every statement is
// parameterized; no value is ever formatted into SQL.
type NoteStore struct {
	pool *pgxpool.Pool
}

var _ notes.Store = (*NoteStore)(nil)

// NewNoteStore returns a notes.Store on the pool of db.
func NewNoteStore(db *DB) *NoteStore { return &NoteStore{pool: db.pool} }

const noteColumns = `id, title, body, created_at, updated_at`

func scanNote(row pgx.Row) (notes.Note, error) {
	var n notes.Note
	err := row.Scan(&n.ID, &n.Title, &n.Body, &n.CreatedAt, &n.UpdatedAt)
	// UTC so that every instance renders the same JSON, whatever its TZ.
	n.CreatedAt, n.UpdatedAt = n.CreatedAt.UTC(), n.UpdatedAt.UTC()
	return n, err
}

// Create inserts a note; the database assigns its id and timestamps.
func (s *NoteStore) Create(ctx context.Context, in notes.Input) (notes.Note, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, err
	}
	n, err := scanNote(s.pool.QueryRow(ctx,
		`INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING `+noteColumns,
		in.Title, in.Body))
	if err != nil {
		return notes.Note{}, fmt.Errorf("create note: %w", err)
	}
	return n, nil
}

// Get returns the note with the id, or notes.ErrNotFound.
func (s *NoteStore) Get(ctx context.Context, id int64) (notes.Note, error) {
	n, err := scanNote(s.pool.QueryRow(ctx,
		`SELECT `+noteColumns+` FROM notes WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return notes.Note{}, notes.ErrNotFound
	}
	if err != nil {
		return notes.Note{}, fmt.Errorf("get note %d: %w", id, err)
	}
	return n, nil
}

// Update replaces the title and body of a note, or returns
// notes.ErrNotFound.
func (s *NoteStore) Update(ctx context.Context, id int64, in notes.Input) (notes.Note, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, err
	}
	n, err := scanNote(s.pool.QueryRow(ctx,
		`UPDATE notes SET title = $2, body = $3, updated_at = now()
		 WHERE id = $1 RETURNING `+noteColumns, id, in.Title, in.Body))
	if errors.Is(err, pgx.ErrNoRows) {
		return notes.Note{}, notes.ErrNotFound
	}
	if err != nil {
		return notes.Note{}, fmt.Errorf("update note %d: %w", id, err)
	}
	return n, nil
}

// Delete removes a note, or returns notes.ErrNotFound.
func (s *NoteStore) Delete(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM notes WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete note %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return notes.ErrNotFound
	}
	return nil
}

// List returns up to limit notes with id > after in id order. The primary
// key index serves it directly, so deep pages cost the same as the first.
func (s *NoteStore) List(ctx context.Context, after int64, limit int) ([]notes.Note, error) {
	if limit <= 0 {
		return []notes.Note{}, nil
	}
	rows, err := s.pool.Query(ctx,
		`SELECT `+noteColumns+` FROM notes WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list notes: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notes.Note, error) {
		return scanNote(row)
	})
	if err != nil {
		return nil, fmt.Errorf("list notes: %w", err)
	}
	return list, nil
}
