package worker

import (
	"context"
	"log/slog"
	"time"
)

// RunPurger deletes recorded runs whose slot is older than before and says
// how many it deleted.
type RunPurger interface {
	PurgeRuns(ctx context.Context, before time.Time) (int64, error)
}

// DefaultRetention is how long PurgeRunsJob keeps run records.
const DefaultRetention = 7 * 24 * time.Hour

// PurgeRunsJob keeps the job_runs table bounded: every job writes one row per
// slot, so without it the table grows forever. It is idempotent ("delete what
// is older than X"), so a missed run is made up by the next one.
func PurgeRunsJob(store RunPurger, retention time.Duration, log *slog.Logger) Job {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return Job{
		Name: "purge-job-runs",
		Run: func(ctx context.Context) error {
			n, err := store.PurgeRuns(ctx, time.Now().Add(-retention))
			if err != nil {
				return err
			}
			log.Info("job: purged old job runs", "deleted", n, "retention", retention.String())
			return nil
		},
	}
}
