package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// RunPurger deletes recorded runs whose slot is older than before and says
// how many it deleted, only while term is the live leader term
// (ErrNotLeader otherwise).
type RunPurger interface {
	PurgeRuns(ctx context.Context, before time.Time, term int64) (int64, error)
}

// DefaultRetention is how long PurgeRunsJob keeps run records.
const DefaultRetention = 7 * 24 * time.Hour

// PurgeRunsJob keeps the job_runs table bounded: every job writes one row per
// slot, so without it the table grows forever. It is idempotent ("delete what
// is older than X"), so a missed run is made up by the next one. Its delete
// is fenced with the leader term: the pattern for a job's own writes.
func PurgeRunsJob(store RunPurger, retention time.Duration, log *slog.Logger) Job {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return Job{
		Name: "purge-job-runs",
		Run: func(ctx context.Context) error {
			term, ok := Term(ctx)
			if !ok {
				return errors.New("purge job runs: no leader term in the context")
			}
			n, err := store.PurgeRuns(ctx, time.Now().Add(-retention), term)
			if err != nil {
				return err
			}
			log.Info("job: purged old job runs", "deleted", n, "retention", retention.String())
			return nil
		},
	}
}
