package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/acme/shop/notes"
)

// NoteStore keeps notes in the notes table. Every statement is
// parameterized; no value is ever formatted into SQL.
type NoteStore struct {
	pool *pgxpool.Pool

	// BeforeCommit, if set, is called inside every update and delete,
	// after the change and before COMMIT (the cache's invalidation).
	BeforeCommit notes.BeforeCommit
}

// writeIdleTimeout is the fence that BeforeCommit relies on: PostgreSQL
// ends a write transaction that stays idle longer than this, so a COMMIT
// arrives within writeIdleTimeout of BeforeCommit, or the change is rolled
// back - even if this process pauses (GC, SIGSTOP) in between. It must
// exceed the longest BeforeCommit (the cache waits at most 1 s for acks)
// and stay below the cache's WriteWindow (5 s) minus the time a COMMIT
// takes to become visible.
const writeIdleTimeout = 2 * time.Second

// beginFenced starts a write transaction with the fence, in one round trip
// (one simple query; SET LOCAL lasts until the transaction ends).
var beginFenced = fmt.Sprintf("BEGIN; SET LOCAL idle_in_transaction_session_timeout = %d",
	writeIdleTimeout.Milliseconds())

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
	var n notes.Note
	err := s.write(ctx, func(tx pgx.Tx) (id int64, err error) {
		n, err = scanNote(tx.QueryRow(ctx,
			`INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING `+noteColumns,
			in.Title, in.Body))
		return n.ID, err
	})
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
		return notes.Note{}, fmt.Errorf("get note %d: %w", id, classify(err))
	}
	return n, nil
}

// classify marks an error that says the database is unavailable with
// notes.ErrUnavailable, so the client gets 503 and may retry.
func classify(err error) error {
	if unavailable(err) {
		return fmt.Errorf("%w: %w", notes.ErrUnavailable, err)
	}
	return err
}

// Update replaces the title and body of a note, or returns
// notes.ErrNotFound.
func (s *NoteStore) Update(ctx context.Context, id int64, in notes.Input) (notes.Note, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, err
	}
	var n notes.Note
	err := s.write(ctx, func(tx pgx.Tx) (int64, error) {
		var err error
		n, err = scanNote(tx.QueryRow(ctx,
			`UPDATE notes SET title = $2, body = $3, updated_at = now()
			 WHERE id = $1 RETURNING `+noteColumns, id, in.Title, in.Body))
		return id, err
	})
	if err != nil {
		return notes.Note{}, fmt.Errorf("update note %d: %w", id, err)
	}
	return n, nil
}

// Delete removes a note, or returns notes.ErrNotFound.
func (s *NoteStore) Delete(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx pgx.Tx) (int64, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM notes WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = notes.ErrNotFound
		}
		return id, err
	})
	if err != nil {
		return fmt.Errorf("delete note %d: %w", id, err)
	}
	return nil
}

// write runs change (which returns the id of the note it changed) in a
// transaction and calls BeforeCommit between the change and COMMIT, under
// the writeIdleTimeout fence. Without BeforeCommit it is a plain
// transaction. A create goes through it too, so that the cache learns of
// the new note (and caches it from its first read).
func (s *NoteStore) write(ctx context.Context, change func(pgx.Tx) (int64, error)) error {
	var opts pgx.TxOptions
	if s.BeforeCommit != nil {
		opts.BeginQuery = beginFenced
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	id, err := change(tx)
	if errors.Is(err, pgx.ErrNoRows) {
		return notes.ErrNotFound
	}
	if err != nil {
		return classify(err)
	}
	done := func(bool) {}
	if s.BeforeCommit != nil {
		if done, err = s.BeforeCommit(ctx, id); err != nil {
			return err
		}
	}
	err = tx.Commit(ctx)
	// A COMMIT that returned an error may still have taken effect:
	// done(false) keeps the note out of the cache until the fence is
	// over, instead of at once.
	done(err == nil)
	if err != nil && unavailable(err) {
		return fmt.Errorf("%w: %w", notes.ErrUnknownOutcome, err)
	}
	return err
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
		return nil, fmt.Errorf("list notes: %w", classify(err))
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notes.Note, error) {
		return scanNote(row)
	})
	if err != nil {
		return nil, fmt.Errorf("list notes: %w", classify(err))
	}
	return list, nil
}
