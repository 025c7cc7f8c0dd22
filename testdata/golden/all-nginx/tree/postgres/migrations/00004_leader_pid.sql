-- leader_lease.pid is the backend process id of the leader's database
-- session, written by every acquire and renew. A follower that finds no
-- backend with that pid (the leader died and its connection closed) takes
-- the lease at once instead of waiting for it to run out. See
-- postgres/elector.go.
--
-- Expand only: a nullable column, which instances of the previous version
-- neither read nor write. A lease they wrote has no pid, or the pid of an
-- earlier holder, and may be taken early like that of a dead leader: during
-- a rolling deploy from that version, leadership may move once more than
-- needed, with every run fenced by its term as always.

-- +goose Up
ALTER TABLE leader_lease ADD COLUMN pid integer;

-- +goose Down
ALTER TABLE leader_lease DROP COLUMN pid;
