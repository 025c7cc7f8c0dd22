package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/acme/shop/worker"
)

// RunStore records the worker's scheduled runs in job_runs.
type RunStore struct {
	pool *pgxpool.Pool
}

var _ worker.Store = (*RunStore)(nil)

// NewRunStore returns a worker.Store on the pool of db.
func NewRunStore(db *DB) *RunStore { return &RunStore{pool: db.pool} }

// liveTerm is the fence every write of the worker starts with: the lease row
// of LeaseName if $1 is its term and it has not expired, locked FOR SHARE so
// that an election (which updates the row) waits for the write's
// transaction, and the write sees a new term if one was elected before it.
// A write joins it and reports ErrNotLeader when it is empty.
const liveTerm = `lease AS (
		SELECT term FROM leader_lease
		WHERE name = '` + LeaseName + `' AND term = $1 AND expires_at > now()
		FOR SHARE)`

// ClaimRun inserts the (job, slot) row, recording term, and reports whether
// this call inserted it; it returns worker.ErrNotLeader when term is not the
// live lease term. One statement checks the lease and inserts, so the
// primary key and the lease together are the fence: of any number of
// instances claiming one slot at once, at most one gets true, and only
// under a live term.
func (s *RunStore) ClaimRun(ctx context.Context, job string, slot time.Time, instanceID string, term int64) (bool, error) {
	var live, won bool
	err := s.pool.QueryRow(ctx, `
		WITH `+liveTerm+`,
		claim AS (
			INSERT INTO job_runs (job, slot, instance_id, started_at, term)
			SELECT $2, $3, $4, now(), term FROM lease
			ON CONFLICT (job, slot) DO NOTHING
			RETURNING true)
		SELECT EXISTS (SELECT FROM lease), EXISTS (SELECT FROM claim)`,
		term, job, slot, instanceID).Scan(&live, &won)
	if err != nil {
		return false, fmt.Errorf("claim run %s at %s: %w", job, slot.Format(time.RFC3339Nano), err)
	}
	if !live {
		return false, fmt.Errorf("claim run %s at %s with term %d: %w", job, slot.Format(time.RFC3339Nano), term, worker.ErrNotLeader)
	}
	return won, nil
}

// FinishRun records when the run ended and its error, if any: only for the
// run claimed under term, and only while term is live (worker.ErrNotLeader
// otherwise).
func (s *RunStore) FinishRun(ctx context.Context, job string, slot time.Time, term int64, runErr error) error {
	var msg *string
	if runErr != nil {
		m := runErr.Error()
		msg = &m
	}
	var live bool
	err := s.pool.QueryRow(ctx, `
		WITH `+liveTerm+`,
		finish AS (
			UPDATE job_runs SET finished_at = now(), error = $4
			WHERE job = $2 AND slot = $3 AND term = $1 AND EXISTS (SELECT FROM lease)
			RETURNING true)
		SELECT EXISTS (SELECT FROM lease)`,
		term, job, slot, msg).Scan(&live)
	if err == nil && !live {
		err = worker.ErrNotLeader
	}
	if err != nil {
		return fmt.Errorf("finish run %s at %s: %w", job, slot.Format(time.RFC3339Nano), err)
	}
	return nil
}

// RecentRuns returns at most limit runs, the latest slot first.
func (s *RunStore) RecentRuns(ctx context.Context, limit int) ([]worker.Run, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT job, slot, instance_id, coalesce(term, 0), started_at, finished_at, coalesce(error, '')
		FROM job_runs ORDER BY slot DESC, job LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (worker.Run, error) {
		var r worker.Run
		err := row.Scan(&r.Job, &r.Slot, &r.InstanceID, &r.Term, &r.StartedAt, &r.FinishedAt, &r.Error)
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

// PurgeRuns deletes the runs whose slot is before the time given, only
// while term is the live lease term (worker.ErrNotLeader otherwise). It is
// the pattern for a job's own writes: join the lease check (liveTerm) in the
// same statement, so a leader that lost its lease cannot write.
func (s *RunStore) PurgeRuns(ctx context.Context, before time.Time, term int64) (int64, error) {
	var live bool
	var n int64
	err := s.pool.QueryRow(ctx, `
		WITH `+liveTerm+`,
		purged AS (
			DELETE FROM job_runs WHERE slot < $2 AND EXISTS (SELECT FROM lease)
			RETURNING true)
		SELECT EXISTS (SELECT FROM lease), (SELECT count(*) FROM purged)`, term, before).Scan(&live, &n)
	if err == nil && !live {
		err = worker.ErrNotLeader
	}
	if err != nil {
		return 0, fmt.Errorf("purge job runs: %w", err)
	}
	return n, nil
}
