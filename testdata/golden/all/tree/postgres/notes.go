package postgres

import (
	"bytes"
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

	// BeforeCommit, if set, is called inside every write before COMMIT
	// (the cache's invalidation); see write.
	BeforeCommit notes.BeforeCommit
	// InTx, if set, runs in every write's transaction after the change
	// (the queue's webhook job); its error rolls the write back.
	InTx func(ctx context.Context, tx pgx.Tx, id int64) error
}

// The fence that BeforeCommit relies on: PostgreSQL ends a write
// transaction that stays idle longer than writeIdleTimeout, and an update or
// delete waits at most writeLockTimeout for its row. So the change arrives
// within writeIdleTimeout of BeforeCommit, ends within writeLockTimeout, and
// its COMMIT arrives within writeIdleTimeout after that, or the change is
// rolled back - even if this process pauses (GC, SIGSTOP) anywhere in
// between. writeIdleTimeout must exceed the longest BeforeCommit (the cache
// waits at most 1 s for acks); the sum of the three must stay below the
// cache's WriteWindow (8 s) minus the time a COMMIT takes to become visible.
const (
	writeIdleTimeout = 2 * time.Second
	writeLockTimeout = time.Second
)

// beginFenced starts a write transaction with the fence, in one round trip
// (one simple query; SET LOCAL lasts until the transaction ends).
var beginFenced = fmt.Sprintf("BEGIN; SET LOCAL idle_in_transaction_session_timeout = %d; SET LOCAL lock_timeout = %d",
	writeIdleTimeout.Milliseconds(), writeLockTimeout.Milliseconds())

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
	err := s.write(ctx, 0, func(tx pgx.Tx) (id int64, err error) {
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

// deletedKeyRetention is how long the key of a deleted note is kept (in
// deleted_note_keys) to refuse its replays with notes.ErrKeyNoteDeleted. A
// key is purged by a later delete, at the earliest this long after its own:
// past that, a replay creates a new note. Retries by clients and by the
// load balancer come within seconds or minutes.
const deletedKeyRetention = 24 * time.Hour

// errKeyTaken says that the INSERT of a keyed note created nothing (or was
// rolled back): a note with the key exists, or existed and was deleted.
// errKeyFree says that neither is true (any more): the create is tried
// again.
var (
	errKeyTaken = errors.New("idempotency key taken")
	errKeyFree  = errors.New("idempotency key free")
)

// CreateIdempotent inserts a note with its idempotency key, or returns the
// note that the key created; see notes.Store.
//
// Why it creates at most one note, however many instances run it at once:
// the unique index on notes.idempotency_key. An INSERT ... ON CONFLICT DO
// NOTHING that meets a row with the key inserted by a transaction still in
// progress waits for that transaction to end (PostgreSQL does this for
// every unique index): if it commits, this INSERT does nothing and returns
// no row, and the next statement, with a snapshot of its own (READ
// COMMITTED), sees the committed note; if it rolls back, this INSERT
// inserts. So of N concurrent calls exactly one inserts and the others
// read its note, with no lock of our own and no retry loop on
// serialization errors.
//
// A deleted note's key moves to deleted_note_keys in the transaction of the
// DELETE (see Delete). The INSERT cannot see that row when it started
// before the DELETE committed (it then waited for the deleted row and
// inserted), so the check runs after it, as a second statement whose
// snapshot is taken after the wait: a note whose key was deleted is never
// created again.
func (s *NoteStore) CreateIdempotent(ctx context.Context, key string, in notes.Input) (notes.Note, bool, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, false, err
	}
	if key == "" {
		return notes.Note{}, false, errors.New("create note: empty idempotency key")
	}
	fp := in.Fingerprint()
	// A key is free again only when its deleted note's key was purged in
	// between: twice in a row is a bug, not a race.
	for range 2 {
		var n notes.Note
		err := s.write(ctx, 0, func(tx pgx.Tx) (int64, error) {
			var err error
			n, err = scanNote(tx.QueryRow(ctx,
				`INSERT INTO notes (title, body, idempotency_key, idempotency_fingerprint)
				 VALUES ($1, $2, $3, $4)
				 ON CONFLICT (idempotency_key) DO NOTHING
				 RETURNING `+noteColumns,
				in.Title, in.Body, key, fp))
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, errKeyTaken // rolled back; nothing to commit
			}
			if err != nil {
				return 0, err
			}
			var deleted bool
			if err := tx.QueryRow(ctx,
				`SELECT EXISTS (SELECT 1 FROM deleted_note_keys WHERE idempotency_key = $1)`,
				key).Scan(&deleted); err != nil {
				return 0, err
			}
			if deleted {
				return 0, errKeyTaken // rolls the new note back
			}
			return n.ID, nil
		})
		if err == nil {
			return n, false, nil
		}
		if !errors.Is(err, errKeyTaken) {
			return notes.Note{}, false, fmt.Errorf("create note: %w", err)
		}
		n, err = s.replay(ctx, key, fp)
		if errors.Is(err, errKeyFree) {
			continue
		}
		return n, err == nil, err
	}
	return notes.Note{}, false, fmt.Errorf("create note: idempotency key %q neither free nor taken", key)
}

// replay returns the note that key created, once an INSERT with the key
// found it taken. Each statement sees what was committed before it began,
// and a DELETE moves the key to deleted_note_keys in its own transaction:
// one of the two reads finds it, unless the deleted key was purged in
// between (errKeyFree).
func (s *NoteStore) replay(ctx context.Context, key string, fp []byte) (notes.Note, error) {
	var n notes.Note
	var stored []byte
	err := s.pool.QueryRow(ctx,
		`SELECT `+noteColumns+`, idempotency_fingerprint FROM notes WHERE idempotency_key = $1`, key).
		Scan(&n.ID, &n.Title, &n.Body, &n.CreatedAt, &n.UpdatedAt, &stored)
	if err == nil {
		n.CreatedAt, n.UpdatedAt = n.CreatedAt.UTC(), n.UpdatedAt.UTC()
		if !bytes.Equal(stored, fp) {
			return notes.Note{}, notes.ErrKeyReused
		}
		return n, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return notes.Note{}, fmt.Errorf("create note: read the note of its idempotency key: %w", classify(err))
	}
	var id int64
	err = s.pool.QueryRow(ctx,
		`SELECT note_id, fingerprint FROM deleted_note_keys WHERE idempotency_key = $1`, key).
		Scan(&id, &stored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return notes.Note{}, errKeyFree
	case err != nil:
		return notes.Note{}, fmt.Errorf("create note: read the deleted note of its idempotency key: %w", classify(err))
	case !bytes.Equal(stored, fp):
		return notes.Note{}, notes.ErrKeyReused
	}
	return notes.Note{ID: id}, notes.ErrKeyNoteDeleted
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
	err := s.write(ctx, id, func(tx pgx.Tx) (int64, error) {
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

// deleteNote deletes note $1, keeps its idempotency key and purges old
// keys (see Delete); $2 is deletedKeyRetention in seconds.
const deleteNote = `
	WITH gone AS (
	    DELETE FROM notes WHERE id = $1
	    RETURNING id, idempotency_key, idempotency_fingerprint
	), kept AS (
	    INSERT INTO deleted_note_keys (idempotency_key, note_id, fingerprint)
	    SELECT idempotency_key, id, idempotency_fingerprint FROM gone
	    WHERE idempotency_key IS NOT NULL
	), purged AS (
	    DELETE FROM deleted_note_keys WHERE idempotency_key IN (
	        SELECT idempotency_key FROM deleted_note_keys
	        WHERE deleted_at < now() - make_interval(secs => $2)
	        LIMIT 100 FOR UPDATE SKIP LOCKED)
	)
	SELECT count(*) FROM gone`

// Delete removes a note, or returns notes.ErrNotFound. The idempotency key
// of the note, if it has one, moves to deleted_note_keys in the same
// statement, so that a late replay of its create is refused rather than
// creating the note again (see CreateIdempotent). The same statement purges
// up to 100 deleted keys older than deletedKeyRetention, skipping those
// another delete is purging (SKIP LOCKED: two deletes never wait for, or
// deadlock on, each other's purge).
func (s *NoteStore) Delete(ctx context.Context, id int64) error {
	err := s.write(ctx, id, func(tx pgx.Tx) (int64, error) {
		var deleted int64
		err := tx.QueryRow(ctx, deleteNote,
			id, deletedKeyRetention.Seconds()).Scan(&deleted)
		if err == nil && deleted == 0 {
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
// transaction, and calls BeforeCommit before COMMIT under the fence
// (beginFenced). id is the note that change will change, or 0 for a create,
// whose id is known only after it. Without BeforeCommit it is a plain
// transaction. A create goes through it too, so that the cache learns of
// the new note (and caches it from its first read).
//
// When the id is known, BeforeCommit runs before the change, not after it:
// the change locks the note's row until COMMIT, and the cache's invalidation
// waits for every instance. Run under the lock, the writes of one busy note
// would queue for each other's invalidations; before it, they wait side by
// side and the lock is held for the change and the COMMIT only.
func (s *NoteStore) write(ctx context.Context, id int64, change func(pgx.Tx) (int64, error)) error {
	var opts pgx.TxOptions
	if s.BeforeCommit != nil {
		opts.BeginQuery = beginFenced
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// done is BeforeCommit's, called with false after anything but a
	// COMMIT that succeeded: a COMMIT that returned an error may still have
	// taken effect, so the note stays out of the cache until the fence is
	// over, instead of at once.
	var done func(committed bool)
	committed := false
	defer func() {
		if done != nil {
			done(committed)
		}
	}()
	if s.BeforeCommit != nil && id != 0 {
		if done, err = s.BeforeCommit(ctx, id); err != nil {
			return err
		}
	}
	changed, err := change(tx)
	if errors.Is(err, pgx.ErrNoRows) {
		return notes.ErrNotFound
	}
	if err != nil {
		return classify(err)
	}
	if s.InTx != nil {
		if err := s.InTx(ctx, tx, changed); err != nil {
			return classify(err)
		}
	}
	if s.BeforeCommit != nil && id == 0 {
		if done, err = s.BeforeCommit(ctx, changed); err != nil {
			return err
		}
	}
	err = tx.Commit(ctx)
	committed = err == nil
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
