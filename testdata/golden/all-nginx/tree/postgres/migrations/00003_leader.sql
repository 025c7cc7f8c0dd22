-- leader_lease is the worker's leader election: one row per election, held
-- by one instance until expires_at (database clock). Every election
-- increments term, so a term names one leadership; job_runs.term records
-- the term each run was claimed under (null for runs claimed before this
-- migration). See postgres/elector.go.
--
-- Expand only: a new table and a nullable column, so instances of the
-- previous version keep working against this schema during a rolling
-- deploy (see the README, "Schema changes under rolling deploys").

-- +goose Up
CREATE TABLE leader_lease (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    term       bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

ALTER TABLE job_runs ADD COLUMN term bigint;

-- +goose Down
ALTER TABLE job_runs DROP COLUMN term;
DROP TABLE leader_lease;
