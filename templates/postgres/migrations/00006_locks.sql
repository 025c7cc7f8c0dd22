-- locks holds the leases of the lock feature (see postgres/lock.go): one row
-- per lock name, held until expires_at (the database's clock, the only one
-- trusted). token counts the grants of the name: the row stays after a
-- release, so every grant's token is greater than all before it (the
-- fencing token).
-- notes.lock_token is the token of the lease the last fenced write of the
-- note was made under (null for notes never written under a lease), so that
-- anything downstream can tell a stale holder's write from a newer one.
--
-- Expand only: a new table and a nullable column, which instances of the
-- previous version neither read nor write.

-- +goose Up
CREATE TABLE locks (
    name       text        PRIMARY KEY,
    token      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

ALTER TABLE notes ADD COLUMN IF NOT EXISTS lock_token bigint;

-- +goose Down
ALTER TABLE notes DROP COLUMN lock_token;
DROP TABLE locks;
