package main

import (
	"context"
	"log/slog"
	"time"

	"example.com/acme/shop/config"
	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/postgres"
	"example.com/acme/shop/worker"
)

// startWorker starts the elector, which competes for leadership and runs the
// scheduler while this instance leads, and reports the leader and the runs
// through opts. The worker stops as soon as shutdown starts (ctx): it
// cancels the jobs, lets them record their end under the still live term,
// then releases the lease so another instance takes over at once. The
// returned func waits for that (at most SHUTDOWN_TIMEOUT); serve defers it
// after the pool's Close, so the pool stays open until then.
func startWorker(ctx context.Context, cfg config.Config, log *slog.Logger, opts *httpapi.Options, db *postgres.DB) (wait func()) {
	elector := postgres.NewElector(cfg.DatabaseURL, cfg.InstanceID, cfg.LeaderPoll, log)
	runs := postgres.NewRunStore(db)
	sched := worker.New(runs, cfg.InstanceID, cfg.WorkerInterval, log)
	sched.Add(worker.PurgeRunsJob(runs, worker.DefaultRetention, log))
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); elector.Run(workerCtx, sched.Run) }()
	log.Info("worker started", "interval", cfg.WorkerInterval.String(), "leader_poll", cfg.LeaderPoll.String())
	opts.Leader, opts.JobRuns = elector, runs
	return func() {
		stopWorker() // when serve returns early, ctx is not cancelled
		select {
		case <-workerDone:
		case <-time.After(cfg.ShutdownTimeout):
			log.Warn("worker: jobs did not stop within SHUTDOWN_TIMEOUT")
		}
	}
}
