package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"example.com/acme/shop/config"
	"example.com/acme/shop/postgres"
	"example.com/acme/shop/queue"
)

// startQueue starts the instance's River client, which works the jobs of
// every instance's writes, and, when NOTES_WEBHOOK_URL is set, makes every
// write of a note enqueue its webhook job in the write's transaction. The
// queue stops as soon as shutdown starts (ctx): it takes no new jobs and
// waits up to SHUTDOWN_TIMEOUT for the running ones, then cancels them, and
// River hands them back to the queue for another instance. The returned
// func waits for that; serve defers it after the pool's Close, so the pool
// stays open until then.
func startQueue(ctx context.Context, cfg config.Config, log *slog.Logger, db database) (wait func(), err error) {
	opts := postgres.QueueOptions{ID: cfg.InstanceID, Logger: log.With("component", "queue")}
	if cfg.NotesWebhookURL != "" {
		opts.Webhook = queue.NewWebhook(cfg.NotesWebhookURL, postgres.JobTimeout)
	}
	q, err := postgres.NewQueue(db.DB, opts)
	if err != nil {
		return nil, err
	}
	if err := q.Start(ctx); err != nil {
		return nil, err
	}
	if opts.Webhook != nil {
		db.notes.InTx = q.EnqueueNoteChange
	}
	log.Info("queue started", "workers", postgres.QueueWorkers, "notes_webhook", cfg.NotesWebhookURL != "")
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := q.Stop(stopCtx); err != nil {
			log.Warn("queue: stop", "err", err)
		}
		log.Info("queue stopped")
	}()
	return func() { <-stopped }, nil
}

// jobs prints the queue: how many jobs are in each state, and the latest
// failed ones (retryable: they run again; discarded: they will not) with the
// error of their last attempt.
func jobs(ctx context.Context, cfg config.Config, _ *slog.Logger) error {
	db, err := postgres.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	counts, failed, err := postgres.QueueReport(ctx, db, 20)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tJOBS")
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%d\n", c.State, c.Count)
	}
	fmt.Fprintf(tw, "\nLATEST FAILED\nID\tKIND\tSTATE\tATTEMPT\tAT\tERROR\n")
	for _, f := range failed {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", f.ID, f.Kind, f.State, f.Attempt, f.MaxAttempts, f.At.UTC().Format(time.RFC3339), f.Error)
	}
	return tw.Flush()
}
