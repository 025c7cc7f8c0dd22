package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"example.com/acme/shop/notes"
	"example.com/acme/shop/queue"
)

// receiver is a webhook endpoint that records every delivery by its
// Webhook-Id; answer decides the status of each (nil: 200).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    map[string][]queue.Event
	answer func(r *http.Request, attempt int) int
}

func newReceiver(t *testing.T, answer func(r *http.Request, attempt int) int) *receiver {
	rc := &receiver{got: map[string][]queue.Event{}, answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e queue.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		id := r.Header.Get(queue.IDHeader)
		rc.mu.Lock()
		rc.got[id] = append(rc.got[id], e)
		attempt := len(rc.got[id])
		rc.mu.Unlock()
		status := http.StatusOK
		if rc.answer != nil {
			status = rc.answer(r, attempt)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) deliveries(id int64) []queue.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]queue.Event(nil), rc.got[strconv.FormatInt(id, 10)]...)
}

// retryAtOnce replaces River's backoff so that retries take no time.
type retryAtOnce struct{}

func (retryAtOnce) NextRetry(*rivertype.JobRow) time.Time { return time.Now() }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestQueue makes a Queue posting to rc (nil: no webhook); started, it
// is stopped at the end of the test.
func newTestQueue(t *testing.T, db *DB, rc *receiver, start bool) *Queue {
	t.Helper()
	opts := QueueOptions{Logger: quietLog, RetryPolicy: retryAtOnce{}, ID: t.Name()}
	if rc != nil {
		opts.Webhook = queue.NewWebhook(rc.URL, 5*time.Second)
	}
	q, err := NewQueue(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if start {
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = q.Stop(ctx)
		})
	}
	return q
}

type jobRow struct {
	ID      int64
	State   string
	Attempt int
	NoteID  int64
	Type    string
}

func webhookJobs(t *testing.T, db *DB) []jobRow {
	t.Helper()
	rows, err := db.pool.Query(context.Background(),
		`SELECT id, state::text, attempt, (args->>'note_id')::bigint, args->>'type'
		 FROM river_job WHERE kind = 'note_webhook' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []jobRow
	for rows.Next() {
		var j jobRow
		if err := rows.Scan(&j.ID, &j.State, &j.Attempt, &j.NoteID, &j.Type); err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitJob waits until the job is in state, or fails the test.
func waitJob(t *testing.T, db *DB, id int64, state string, timeout time.Duration) jobRow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, j := range webhookJobs(t, db) {
			if j.ID == id && j.State == state {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d not %s after %v: %+v", id, state, timeout, webhookJobs(t, db))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job exists if and only if its write committed: each committed create,
// update and delete makes one, a write that rolls back after the job was
// inserted in its transaction leaves none, and so does a write that fails.
// Then the started queue delivers each once, with the job's id.
func TestQueueJobIffCommit(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	rc := newReceiver(t, nil)
	q := newTestQueue(t, db, rc, false)
	s := NewNoteStore(db)
	s.InTx = q.EnqueueNoteChange

	n, err := s.Create(ctx, notes.Input{Title: "t", Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "t", Body: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	// Rolled back after the job's insert: BeforeCommit runs after the
	// change (and InTx) for a create, and its error rolls back.
	failed := errors.New("refused before commit")
	s.BeforeCommit = func(context.Context, int64) (func(bool), error) { return nil, failed }
	if _, err := s.Create(ctx, notes.Input{Title: "t", Body: "rolled back"}); !errors.Is(err, failed) {
		t.Fatalf("create with a failing BeforeCommit: %v", err)
	}
	s.BeforeCommit = nil
	if _, err := s.Update(ctx, n.ID, notes.Input{Title: "t", Body: "gone"}); !errors.Is(err, notes.ErrNotFound) {
		t.Fatalf("update of a deleted note: %v", err)
	}
	// A failing InTx fails the write: nothing is written.
	s.InTx = func(context.Context, pgx.Tx, int64) error { return failed }
	if _, err := s.Create(ctx, notes.Input{Title: "t", Body: "no job, no note"}); !errors.Is(err, failed) {
		t.Fatalf("create with a failing InTx: %v", err)
	}
	var count int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&count); err != nil || count != 0 {
		t.Fatalf("%d notes (%v), want 0: the failing writes wrote nothing", count, err)
	}

	jobs := webhookJobs(t, db)
	want := []string{queue.NoteChanged, queue.NoteChanged, queue.NoteDeleted}
	if len(jobs) != len(want) {
		t.Fatalf("jobs %+v, want one per committed write (%v)", jobs, want)
	}
	for i, j := range jobs {
		if j.NoteID != n.ID || j.Type != want[i] || j.State != "available" {
			t.Errorf("job %d = %+v, want note %d, %s, available", i, j, n.ID, want[i])
		}
	}

	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer q.Stop(ctx)
	for i, j := range jobs {
		waitJob(t, db, j.ID, "completed", 10*time.Second)
		got := rc.deliveries(j.ID)
		if len(got) != 1 || got[0] != (queue.Event{Type: want[i], NoteID: n.ID}) {
			t.Errorf("job %d delivered %+v, want one %s of note %d", j.ID, got, want[i], n.ID)
		}
	}
}

// A failing receiver gets the event again, with the same Webhook-Id, until
// it answers 2xx.
func TestQueueRetryThenSuccess(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	rc := newReceiver(t, func(_ *http.Request, attempt int) int {
		if attempt < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	q := newTestQueue(t, db, rc, true)
	s := NewNoteStore(db)
	s.InTx = q.EnqueueNoteChange
	n, err := s.Create(ctx, notes.Input{Title: "t", Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	jobs := webhookJobs(t, db)
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v, want 1", jobs)
	}
	j := waitJob(t, db, jobs[0].ID, "completed", 20*time.Second)
	if got := rc.deliveries(j.ID); len(got) != 3 || j.Attempt != 3 {
		t.Fatalf("job %+v: %d deliveries, want 3 (2 failed, then 200) of note %d", j, len(got), n.ID)
	}
}

// After MaxAttempts failures the job is discarded (River's dead letter),
// keeps its errors, and `server jobs`' report shows it.
func TestQueueDiscardAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	rc := newReceiver(t, func(*http.Request, int) int { return http.StatusInternalServerError })
	q := newTestQueue(t, db, rc, true)
	// The job's own MaxAttempts (10) with River's backoff takes hours: two
	// attempts show the same rule.
	res, err := q.client.Insert(ctx, WebhookArgs{NoteID: 7, WriteID: 1, Type: queue.NoteChanged}, &river.InsertOpts{MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, db, res.Job.ID, "discarded", 20*time.Second)
	if got := rc.deliveries(j.ID); len(got) != 2 || j.Attempt != 2 {
		t.Fatalf("job %+v: %d deliveries, want 2", j, len(got))
	}
	counts, failed, err := QueueReport(ctx, db, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0] != (JobCount{State: "discarded", Count: 1}) {
		t.Errorf("counts %+v, want 1 discarded", counts)
	}
	if len(failed) != 1 || failed[0].ID != j.ID || failed[0].State != "discarded" || failed[0].Attempt != 2 ||
		failed[0].Error != "webhook: "+rc.URL+" answered 500 Internal Server Error" {
		t.Errorf("failed %+v, want job %d discarded after 2 attempts with the receiver's 500", failed, j.ID)
	}
}

// One write makes one job even if it enqueues twice (unique by note and
// write); two writes of one note make two.
func TestQueueUnique(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	q := newTestQueue(t, db, nil, false)
	s := NewNoteStore(db)
	n, err := s.Create(ctx, notes.Input{Title: "t", Body: "b"}) // no InTx: no job
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := q.EnqueueNoteChange(ctx, tx, n.ID); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if jobs := webhookJobs(t, db); len(jobs) != 2 {
		t.Fatalf("jobs %+v, want 2: one per write", jobs)
	}
}

// SIGTERM's stop: a job still running when the stop's wait runs out is
// cancelled and handed back (available, its attempt not counted), and
// another instance's queue then delivers it.
func TestQueueStopHandsJobBack(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	running := make(chan struct{}, 1)
	hanging := newReceiver(t, func(r *http.Request, _ int) int {
		running <- struct{}{}
		<-r.Context().Done() // until the job's context is cancelled
		return http.StatusServiceUnavailable
	})
	first := newTestQueue(t, db, hanging, false)
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s := NewNoteStore(db)
	s.InTx = first.EnqueueNoteChange
	if _, err := s.Create(ctx, notes.Input{Title: "t", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not start")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := first.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	jobs := webhookJobs(t, db)
	if len(jobs) != 1 || jobs[0].State != "available" || jobs[0].Attempt != 0 {
		t.Fatalf("after the stop: %+v, want the job available with no attempt counted", jobs)
	}

	rc := newReceiver(t, nil)
	newTestQueue(t, db, rc, true)
	j := waitJob(t, db, jobs[0].ID, "completed", 10*time.Second)
	if got := rc.deliveries(j.ID); len(got) != 1 {
		t.Fatalf("job %+v delivered %d times by the second queue, want 1", j, len(got))
	}
}
