package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/jobs/worker"
)

// RunStore records the worker's scheduled runs in job_runs.
type RunStore struct {
	pool *pgxpool.Pool
}

var _ worker.Store = (*RunStore)(nil)

// NewRunStore returns a worker.Store on the pool of db.
func NewRunStore(db *DB) *RunStore { return &RunStore{pool: db.pool} }

// ClaimRun inserts the (job, slot) row and reports whether this call
// inserted it. The primary key makes the database the fence: of any number of
// instances claiming one slot at once, exactly one gets true.
func (s *RunStore) ClaimRun(ctx context.Context, job string, slot time.Time, instanceID string) (bool, error) {
	var won bool
	err := s.pool.QueryRow(ctx, `
		INSERT INTO job_runs (job, slot, instance_id, started_at)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (job, slot) DO NOTHING
		RETURNING true`, job, slot, instanceID).Scan(&won)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another instance has the slot
	}
	if err != nil {
		return false, fmt.Errorf("claim run %s at %s: %w", job, slot.Format(time.RFC3339), err)
	}
	return won, nil
}

// FinishRun records when the run ended and its error, if any.
func (s *RunStore) FinishRun(ctx context.Context, job string, slot time.Time, runErr error) error {
	var msg *string
	if runErr != nil {
		m := runErr.Error()
		msg = &m
	}
	_, err := s.pool.Exec(ctx,
		`UPDATE job_runs SET finished_at = now(), error = $3 WHERE job = $1 AND slot = $2`,
		job, slot, msg)
	if err != nil {
		return fmt.Errorf("finish run %s at %s: %w", job, slot.Format(time.RFC3339), err)
	}
	return nil
}

// RecentRuns returns at most limit runs, the latest slot first.
func (s *RunStore) RecentRuns(ctx context.Context, limit int) ([]worker.Run, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT job, slot, instance_id, started_at, finished_at, coalesce(error, '')
		FROM job_runs ORDER BY slot DESC, job LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (worker.Run, error) {
		var r worker.Run
		err := row.Scan(&r.Job, &r.Slot, &r.InstanceID, &r.StartedAt, &r.FinishedAt, &r.Error)
		// UTC so that every instance renders the same JSON, whatever its TZ.
		r.Slot, r.StartedAt = r.Slot.UTC(), r.StartedAt.UTC()
		if r.FinishedAt != nil {
			t := r.FinishedAt.UTC()
			r.FinishedAt = &t
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", err)
	}
	return runs, nil
}

// PurgeRuns deletes the runs whose slot is before the time given.
func (s *RunStore) PurgeRuns(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM job_runs WHERE slot < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("purge job runs: %w", err)
	}
	return tag.RowsAffected(), nil
}
