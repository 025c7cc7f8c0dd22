// Package worker runs scheduled jobs on the leader instance only, at most
// once per slot cluster-wide.
//
// Leader election (see postgres.Elector) makes one instance run the
// scheduler, and hands it a term: a number that grows with every election.
// An instance can still act as leader after it lost the lease (it was
// paused, its clock ran slow), so the database is the fence: the scheduler
// claims the (job, slot) row in job_runs, in one statement that also checks
// that its term is still the live one, and only the instance whose claim won
// runs the job. A slot is claimed at most once, and only under a live term.
//
// A slot is at-most-once, not at-least-once: a run that was claimed but never
// finished (the leader died or froze mid-run) is not retried in that slot;
// the row keeps finished_at empty and the next slot runs as usual. Retrying
// would need to know whether the dead run's side effects happened, which
// only the job can know. Jobs should therefore be idempotent and catch up on
// their own (a purge that deletes "everything older than X" does).
//
// A job's own writes are fenced only if they carry the term: Term(ctx) gives
// it, and a write that checks it against the lease in the same statement
// (see postgres.RunStore.PurgeRuns) is refused once another instance leads.
package worker

import (
	"context"
	"errors"
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
	Term       int64 // the leader term it was claimed under; 0 before terms were recorded
	StartedAt  time.Time
	FinishedAt *time.Time // nil while running, or when the runner died
	Error      string     // empty when the run succeeded
}

// Store records runs. ClaimRun is the fence: it reports true to at most one
// caller per (job, slot), and only while term is the live leader term; with
// a term that is no longer live it returns ErrNotLeader. FinishRun records
// the end of a run claimed under term, while term is live.
type Store interface {
	ClaimRun(ctx context.Context, job string, slot time.Time, instanceID string, term int64) (bool, error)
	FinishRun(ctx context.Context, job string, slot time.Time, term int64, runErr error) error
}

// ErrNotLeader is the error of a fenced write whose term is no longer the
// live leader term: another instance leads (or nobody, for now).
var ErrNotLeader = errors.New("not the leader: the term is no longer live")

type termKey struct{}

// WithTerm returns ctx carrying the leader term; the elector gives it to
// the scheduler, which hands it to the jobs.
func WithTerm(ctx context.Context, term int64) context.Context {
	return context.WithValue(ctx, termKey{}, term)
}

// Term is the leader term ctx carries. A job passes it to its writes to
// fence them: a write that checks the term in the database cannot land
// after another instance was elected.
func Term(ctx context.Context) (int64, bool) {
	term, ok := ctx.Value(termKey{}).(int64)
	return term, ok
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
// claimed, or could not claim because its term was no longer live: each one
// is a run the fence prevented.
func (s *Scheduler) Fenced() int64 { return s.fenced.Load() }

// Run schedules every job until ctx is done (the instance stopped leading or
// is shutting down), then waits for running jobs to return. ctx must carry
// the leader term (WithTerm; the elector's leader context does).
func (s *Scheduler) Run(ctx context.Context) {
	term, ok := Term(ctx)
	if !ok {
		s.log.Error("worker: no leader term in the context; not scheduling")
		return
	}
	s.mu.Lock()
	jobs := append([]Job(nil), s.jobs...)
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { s.loop(ctx, j, term) })
	}
	wg.Wait()
}

// loop runs one job: the current slot at once (a new leader picks up the slot
// its predecessor may not have run; the fence says if it did), then every
// following slot. A run that overruns its slot skips the slots it covered.
func (s *Scheduler) loop(ctx context.Context, j Job, term int64) {
	for {
		slot := Slot(time.Now(), s.interval)
		s.runSlot(ctx, j, slot, term)
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

func (s *Scheduler) runSlot(ctx context.Context, j Job, slot time.Time, term int64) {
	if ctx.Err() != nil {
		return
	}
	log := s.log.With("job", j.Name, "slot", slot.Format(time.RFC3339Nano), "term", term)
	won, err := s.store.ClaimRun(ctx, j.Name, slot, s.instanceID, term)
	if errors.Is(err, ErrNotLeader) {
		s.fenced.Add(1)
		log.Warn("job: slot not claimed: this instance's term is no longer live")
		return
	}
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

	// Record the outcome even if the context was cancelled meanwhile (a
	// clean stop: the lease is released only after this). If the term is
	// no longer live, the write is refused and the row keeps finished_at
	// empty, like a run whose leader died.
	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.FinishRun(finishCtx, j.Name, slot, term, runErr); err != nil {
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
