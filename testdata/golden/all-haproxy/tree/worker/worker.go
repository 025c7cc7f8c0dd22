// Package worker runs scheduled jobs on the leader instance only, exactly once
// per slot cluster-wide.
//
// Two layers keep a job from running twice. Leader election (see
// postgres.Elector) makes one instance run the scheduler; but an instance can
// believe it still leads for a moment after it lost the lock (a partition, a
// slow poll). So the database is the fence: before running, the scheduler
// claims the (job, slot) row in job_runs, and only the instance whose insert
// won runs it. A slot is claimed at most once, so it runs at most once even if
// two instances ever schedule at the same time.
//
// A run that was claimed but never finished (the leader died mid-run) is not
// retried in the same slot: the row keeps finished_at empty and the next slot
// runs as usual. Jobs should therefore be idempotent and catch up on their own
// (a purge that deletes "everything older than X" does).
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// A Job is a named unit of scheduled work. Run must return when ctx is done:
// the context is cancelled when the instance stops leading.
type Job struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run is one recorded run of a job.
type Run struct {
	Job        string
	Slot       time.Time
	InstanceID string
	StartedAt  time.Time
	FinishedAt *time.Time // nil while running, or when the runner died
	Error      string     // empty when the run succeeded
}

// Store records runs. ClaimRun is the fence: it reports true to exactly one
// caller per (job, slot), whoever calls it.
type Store interface {
	ClaimRun(ctx context.Context, job string, slot time.Time, instanceID string) (bool, error)
	FinishRun(ctx context.Context, job string, slot time.Time, runErr error) error
}

// Slot is the start of the slot that t falls in: unix time truncated to the
// interval, so every instance computes the same slot whatever its start time
// (time.Truncate counts from year 1, not from the unix epoch).
func Slot(t time.Time, interval time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-ns%int64(interval)).UTC()
}

// Scheduler runs its jobs once per interval. It is meant to run only while
// this instance leads: pass Run to the elector.
type Scheduler struct {
	store      Store
	instanceID string
	interval   time.Duration
	log        *slog.Logger

	mu   sync.Mutex
	jobs []Job

	ran    atomic.Int64
	fenced atomic.Int64
}

// New returns a scheduler that runs each job every interval.
func New(store Store, instanceID string, interval time.Duration, log *slog.Logger) *Scheduler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{store: store, instanceID: instanceID, interval: interval, log: log}
}

// Add registers a job. Jobs added after Run started take effect on the next Run.
func (s *Scheduler) Add(j Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = append(s.jobs, j)
}

// Ran is how many runs this scheduler claimed and ran.
func (s *Scheduler) Ran() int64 { return s.ran.Load() }

// Fenced is how many slots this scheduler tried to claim but found already
// claimed by another instance: each one is a double run the fence prevented.
func (s *Scheduler) Fenced() int64 { return s.fenced.Load() }

// Run schedules every job until ctx is done (the instance stopped leading or
// is shutting down), then waits for running jobs to return.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	jobs := append([]Job(nil), s.jobs...)
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { s.loop(ctx, j) })
	}
	wg.Wait()
}

// loop runs one job: the current slot at once (a new leader picks up the slot
// its predecessor may not have run; the fence says if it did), then every
// following slot. A run that overruns its slot skips the slots it covered.
func (s *Scheduler) loop(ctx context.Context, j Job) {
	for {
		slot := Slot(time.Now(), s.interval)
		s.runSlot(ctx, j, slot)
		next := slot.Add(s.interval)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Scheduler) runSlot(ctx context.Context, j Job, slot time.Time) {
	if ctx.Err() != nil {
		return
	}
	log := s.log.With("job", j.Name, "slot", slot.Format(time.RFC3339Nano))
	won, err := s.store.ClaimRun(ctx, j.Name, slot, s.instanceID)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("job: cannot claim slot", "err", err)
		}
		return
	}
	if !won {
		s.fenced.Add(1)
		log.Info("job: slot already claimed by another instance")
		return
	}
	s.ran.Add(1)

	// A run gets at most one interval: it must not outlive its slot.
	runCtx, cancel := context.WithTimeout(ctx, s.interval)
	start := time.Now()
	runErr := safeRun(runCtx, j)
	cancel()

	// Record the outcome even if leadership was lost meanwhile (ctx done):
	// the row then says why the run stopped.
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.FinishRun(finishCtx, j.Name, slot, runErr); err != nil {
		log.Warn("job: cannot record the end of the run", "err", err)
	}
	if runErr != nil {
		log.Warn("job: run failed", "err", runErr, "duration", time.Since(start).String())
		return
	}
	log.Info("job: run done", "duration", time.Since(start).String())
}

// safeRun turns a panicking job into a failed run instead of a dead process.
func safeRun(ctx context.Context, j Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("job panicked: %v", p)
		}
	}()
	return j.Run(ctx)
}
