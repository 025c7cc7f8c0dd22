-- notes.idempotency_key is the Idempotency-Key of the POST that created the
-- note (null for a note created without one); its unique index is what
-- makes POST /api/notes create at most one note per key, however many
-- instances receive the same request at once (INSERT ... ON CONFLICT
-- (idempotency_key) DO NOTHING, see postgres/notes.go).
-- idempotency_fingerprint is a hash of the title and body of that POST, so
-- that a replay is told from the reuse of a key for another note.
-- deleted_note_keys keeps the key of a deleted note for a day, so that a
-- late replay of its create does not bring the note back.
--
-- Expand only: nullable columns and a new table, which instances of the
-- previous version neither read nor write.
--
-- The index is built in the migration's transaction, not CONCURRENTLY: a
-- CONCURRENTLY build waits for every transaction of the database that holds
-- an older snapshot, and the instances that start with this one wait for
-- the migration lock inside a statement (pg_advisory_lock, see
-- postgres/migrate.go), which holds one until the lock is released - after
-- the build. The build would wait for them until lock_timeout. A plain
-- build blocks writes to notes while it reads the table once: for a large
-- table, add the columns and build the index CONCURRENTLY by hand (with the
-- names below) before deploying; IF NOT EXISTS then skips them here.

-- +goose Up
ALTER TABLE notes ADD COLUMN IF NOT EXISTS idempotency_key text;
ALTER TABLE notes ADD COLUMN IF NOT EXISTS idempotency_fingerprint bytea;
CREATE UNIQUE INDEX IF NOT EXISTS notes_idempotency_key_idx ON notes (idempotency_key);

CREATE TABLE deleted_note_keys (
    idempotency_key text        PRIMARY KEY,
    note_id         bigint      NOT NULL,
    fingerprint     bytea       NOT NULL,
    deleted_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deleted_note_keys_deleted_at_idx ON deleted_note_keys (deleted_at);

-- +goose Down
DROP TABLE deleted_note_keys;
ALTER TABLE notes DROP COLUMN idempotency_fingerprint;
ALTER TABLE notes DROP COLUMN idempotency_key;
