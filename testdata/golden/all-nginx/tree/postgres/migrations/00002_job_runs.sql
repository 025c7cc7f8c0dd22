-- job_runs records every scheduled run of the worker. The primary key on
-- (job, slot) is the fence that makes a slot run at most once cluster-wide:
-- an instance runs a job only if its INSERT of the row won.

-- +goose Up
CREATE TABLE job_runs (
    job         text        NOT NULL,
    slot        timestamptz NOT NULL,
    instance_id text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    error       text,
    PRIMARY KEY (job, slot)
);

-- Recent runs are listed, and old ones purged, by slot.
CREATE INDEX job_runs_slot_idx ON job_runs (slot);

-- +goose Down
DROP TABLE job_runs;
