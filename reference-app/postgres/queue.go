package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"example.com/acme/shop/queue"
)

// The queue's timing. A job is a row in river_job; an instance that takes it
// marks it running, and if that instance dies (SIGKILL, a lost machine) the
// row stays running until River's rescuer, on the instance that leads River,
// finds it older than RescueAfter and makes it retryable: the job runs
// again, at least once in all. River's default is an hour; here a job may
// run JobTimeout at most (its context is then cancelled), so RescueAfter
// only has to be longer than that. The rescuer looks every 30 s (River's
// fixed interval), so a job of a dead instance runs again within
// RescueAfter + 30 s.
const (
	JobTimeout  = 10 * time.Second
	RescueAfter = 15 * time.Second
	// MaxAttempts: a job that fails is tried again after River's backoff
	// (attempt^4 seconds, with jitter: 1 s, 16 s, 81 s ...); after the
	// 10th failure, about 4 hours after the first, it is discarded: it
	// stays in river_job in state discarded, with its errors, for
	// `server jobs` to show, for 7 days (River's DiscardedJobRetentionPeriod).
	MaxAttempts = 10
	// QueueWorkers is how many jobs one instance runs at once. River
	// fetches at most that many per fetch, and fetches at most every
	// 100 ms (FetchCooldown), so it also caps an instance's rate: 10
	// measured about 90 jobs/s (make bench, queue jobs). A job that waits
	// on the network (a webhook) holds no database connection while it
	// runs, so more workers cost little.
	QueueWorkers = 50
)

// WebhookArgs is the job that sends a change of a note to the webhook.
// River stores it as JSON in river_job.args.
//
// It is unique by (note, write): WriteID is the id of the transaction that
// changed the note, so one write makes one job even if it enqueues twice,
// while every write makes its own.
type WebhookArgs struct {
	NoteID  int64  `json:"note_id" river:"unique"`
	WriteID int64  `json:"write_id" river:"unique"`
	Type    string `json:"type"` // queue.NoteChanged or queue.NoteDeleted
}

// Kind names the job in river_job.kind.
func (WebhookArgs) Kind() string { return "note_webhook" }

// InsertOpts are the job's defaults.
func (WebhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: MaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type webhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	hook *queue.Webhook // nil: NOTES_WEBHOOK_URL is not set here
}

// Work sends the event with the job's id as the delivery id: the same on
// every attempt, so a receiver can dedupe.
func (w *webhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	if w.hook == nil {
		// An instance without the URL among instances with it (a rolling
		// change of the setting): an error, so that the job is tried again,
		// later and likely elsewhere, rather than dropped.
		return errors.New("NOTES_WEBHOOK_URL is not set on this instance")
	}
	return w.hook.Send(ctx, strconv.FormatInt(job.ID, 10), queue.Event{Type: job.Args.Type, NoteID: job.Args.NoteID})
}

// QueueOptions configure a Queue.
type QueueOptions struct {
	Webhook *queue.Webhook // nil: webhook jobs fail here (and are retried)
	Logger  *slog.Logger
	// RetryPolicy, if set, replaces River's backoff (tests retry at once).
	RetryPolicy river.ClientRetryPolicy
	// ID names the instance in River's tables (river_leader, river_job.attempted_by).
	ID string
}

// Queue is the River client of one instance, on the instance's pool.
type Queue struct {
	client *river.Client[pgx.Tx]
}

// NewQueue makes the River client. It runs jobs only after Start.
//
// Connections: River works on the instance's pool (DB_POOL_SIZE), and
// takes one connection out of it for LISTEN (new jobs, leadership), which
// the pool then replaces: one more connection per instance, which the
// deployment's max_connections counts.
func NewQueue(db *DB, opts QueueOptions) (*Queue, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &webhookWorker{hook: opts.Webhook})
	client, err := river.NewClient(riverpgxv5.New(db.pool), &river.Config{
		ID:                   opts.ID,
		Logger:               opts.Logger,
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: QueueWorkers}},
		Workers:              workers,
		JobTimeout:           JobTimeout,
		RescueStuckJobsAfter: RescueAfter,
		MaxAttempts:          MaxAttempts,
		RetryPolicy:          opts.RetryPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Queue{client: client}, nil
}

// Start starts working jobs; it returns at once. ctx only bounds the start:
// jobs stop with Stop.
func (q *Queue) Start(ctx context.Context) error {
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("queue: start: %w", err)
	}
	return nil
}

// Stop takes no new jobs and waits for the running ones until ctx is done;
// then it cancels those still running. A job stopped that way goes back to
// the queue (available, the attempt not counted) for another instance.
func (q *Queue) Stop(ctx context.Context) error {
	if err := q.client.Stop(ctx); err == nil {
		return nil
	}
	// The jobs' contexts are cancelled; they return at once, and River
	// records them as available again (a short bound for that).
	cancelCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := q.client.StopAndCancel(cancelCtx); err != nil {
		return fmt.Errorf("queue: stop: %w", err)
	}
	return nil
}

// EnqueueNoteChange is the NoteStore's InTx hook: it inserts the webhook job
// of the change of note id in the write's own transaction, so the job exists
// if and only if the write commits.
func (q *Queue) EnqueueNoteChange(ctx context.Context, tx pgx.Tx, id int64) error {
	args := WebhookArgs{NoteID: id, Type: queue.NoteChanged}
	var deleted bool
	// pg_current_xact_id: the write's transaction id (xid8, never reused).
	err := tx.QueryRow(ctx,
		`SELECT pg_current_xact_id()::text::bigint, NOT EXISTS (SELECT 1 FROM notes WHERE id = $1)`, id).
		Scan(&args.WriteID, &deleted)
	if err != nil {
		return fmt.Errorf("enqueue webhook: %w", err)
	}
	if deleted {
		args.Type = queue.NoteDeleted
	}
	if _, err := q.client.InsertTx(ctx, tx, args, nil); err != nil {
		return fmt.Errorf("enqueue webhook: %w", err)
	}
	return nil
}

// migrateQueue applies River's own migrations (its tables river_job,
// river_leader, river_queue ...) with River's migrator, which keeps its
// versions in river_migration. Migrate calls it after goose, under the same
// migration lock, so instances starting together apply them once; a River
// upgrade brings its migrations with it. It runs on a pool of one connection
// with the migration session's settings.
func migrateQueue(ctx context.Context, url string, log *slog.Logger) error {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("queue migrations: %w", err)
	}
	for name, value := range migrationParams {
		if _, set := cfg.ConnConfig.RuntimeParams[name]; !set {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("queue migrations: %w", err)
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("queue migrations: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("queue migrations: %w", err)
	}
	for _, v := range res.Versions {
		log.Info("queue migration applied", "version", v.Version, "name", v.Name,
			"duration_ms", float64(v.Duration.Microseconds())/1000)
	}
	return nil
}

// JobCount is the number of jobs in one state.
type JobCount struct {
	State string
	Count int64
}

// FailedJob is a job whose last attempt failed: retryable (it will run
// again) or discarded (it will not).
type FailedJob struct {
	ID                   int64
	Kind, State          string
	Attempt, MaxAttempts int
	Error                string // the last attempt's
	At                   time.Time
}

// QueueReport returns the number of jobs by state and the latest limit
// failed jobs, newest first: what `server jobs` prints.
func QueueReport(ctx context.Context, db *DB, limit int) ([]JobCount, []FailedJob, error) {
	rows, err := db.pool.Query(ctx, `SELECT state::text, count(*) FROM river_job GROUP BY state ORDER BY state`)
	if err != nil {
		return nil, nil, fmt.Errorf("queue report: %w", err)
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[JobCount])
	if err != nil {
		return nil, nil, fmt.Errorf("queue report: %w", err)
	}
	rows, err = db.pool.Query(ctx, `
		SELECT id, kind, state::text, attempt, max_attempts,
		       coalesce(errors[array_length(errors, 1)]->>'error', ''),
		       coalesce(finalized_at, attempted_at, created_at)
		FROM river_job WHERE state IN ('retryable', 'discarded')
		ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("queue report: %w", err)
	}
	failed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[FailedJob])
	if err != nil {
		return nil, nil, fmt.Errorf("queue report: %w", err)
	}
	return counts, failed, nil
}
