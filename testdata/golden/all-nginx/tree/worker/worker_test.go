package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"example.com/acme/shop/postgres"
	"example.com/acme/shop/testsupport"
	"example.com/acme/shop/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// migrated returns the URL of a fresh database with the schema applied.
func migrated(t *testing.T) string {
	t.Helper()
	url := testsupport.Postgres(t)
	if _, err := postgres.Migrate(context.Background(), url, postgres.Migrations(), quiet); err != nil {
		t.Fatal(err)
	}
	return url
}

// instance opens its own pool, as a separate process would.
func instance(t *testing.T, url string) *postgres.RunStore {
	t.Helper()
	db, err := postgres.Open(context.Background(), url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return postgres.NewRunStore(db)
}

// counter is a job that counts its runs per instance.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (c *counter) job(instance string) worker.Job {
	return worker.Job{Name: "count", Run: func(ctx context.Context) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.runs == nil {
			c.runs = map[string]int{}
		}
		c.runs[instance]++
		return nil
	}}
}

func psql(t *testing.T, url, sql string) string { return testsupport.PSQL(t, url, sql) }

// hold makes term the live leader term for an hour, as if an elector held
// it, and returns ctx carrying it, as the elector's leader context does.
func hold(t *testing.T, url string, term int64) context.Context {
	t.Helper()
	psql(t, url, fmt.Sprintf(`INSERT INTO leader_lease (name, holder, term, expires_at)
		VALUES ('%s', 'test', %d, now() + interval '1 hour')
		ON CONFLICT (name) DO UPDATE SET holder = 'test', term = %[2]d, expires_at = now() + interval '1 hour'`,
		postgres.LeaseName, term))
	return worker.WithTerm(context.Background(), term)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// assertOneRunPerSlot checks the invariant on the table itself.
func assertOneRunPerSlot(t *testing.T, url string) {
	t.Helper()
	if dups := psql(t, url, `SELECT job, slot, count(*) FROM job_runs
		GROUP BY job, slot HAVING count(*) > 1`); dups != "" {
		t.Errorf("slots run more than once:\n%s", dups)
	}
}

func TestSlot(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, tc := range []struct {
		interval time.Duration
		want     time.Time
	}{
		{time.Minute, time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)},
		{time.Hour, time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)},
		// 7s does not divide a day: the slot counts from the unix epoch.
		{7 * time.Second, time.Unix(at.Unix()-at.Unix()%7, 0).UTC()},
	} {
		if got := worker.Slot(at, tc.interval); !got.Equal(tc.want) {
			t.Errorf("Slot(%s, %s) = %s, want %s", at, tc.interval, got, tc.want)
		}
		if got := worker.Slot(at.In(time.FixedZone("X", 5*3600)), tc.interval); !got.Equal(tc.want) {
			t.Errorf("Slot depends on the time zone: %s", got)
		}
	}
}

// TestFenceTwoLeaders simulates what the lease alone cannot exclude: two
// instances that both believe they lead, one with the live term and one
// with the term before it (a paused leader that resumed). Both schedulers
// try every slot; the unique (job, slot) key and the term check let only
// the live term run, once per slot.
func TestFenceTwoLeaders(t *testing.T) {
	url := migrated(t)
	const interval = 200 * time.Millisecond
	var c counter
	scheds := []*worker.Scheduler{
		worker.New(instance(t, url), "a", interval, quiet), // the stale leader, term 1
		worker.New(instance(t, url), "b", interval, quiet), // the live one, term 2
	}
	hold(t, url, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*interval+interval/2)
	defer cancel()
	var wg sync.WaitGroup
	for i, s := range scheds {
		s.Add(c.job(s2name(i)))
		termCtx := worker.WithTerm(ctx, int64(i+1))
		wg.Go(func() { s.Run(termCtx) })
	}
	wg.Wait()

	assertOneRunPerSlot(t, url)
	rows := atoi(t, psql(t, url, "SELECT count(*) FROM job_runs"))
	var ran, fenced int64
	for _, s := range scheds {
		ran += s.Ran()
		fenced += s.Fenced()
	}
	t.Logf("two believed leaders (terms 1 and 2, 2 live), %s interval: %d slots run (a %d, b %d), %d attempts fenced off",
		interval, rows, c.runs["a"], c.runs["b"], fenced)
	// A claim cut off by the end of ctx may have committed without its
	// scheduler learning it won: at most one row more than the claims it
	// counted, and that slot never ran (at most once, not at least once).
	if int64(c.runs["a"]+c.runs["b"]) != ran || int64(rows) < ran || int64(rows) > ran+1 {
		t.Errorf("rows %d, claimed runs %d, job executions %v: want executions = claims, and rows = claims (+1 cut off at the end)", rows, ran, c.runs)
	}
	if c.runs["a"] != 0 || scheds[0].Fenced() < ran-1 || ran < 8 {
		t.Errorf("%d slots; the stale term ran %d and was fenced %d times: want it fenced on every slot",
			rows, c.runs["a"], scheds[0].Fenced())
	}
	if terms := psql(t, url, "SELECT string_agg(DISTINCT term::text, ',') FROM job_runs"); terms != "2" {
		t.Errorf("runs recorded under terms %q, want only 2", terms)
	}
}

// TestStaleTermRefused: with term 5 live, the store refuses term 4's claim,
// finish and purge (worker.ErrNotLeader) and takes term 5's; once the lease
// expired, term 5 is refused too.
func TestStaleTermRefused(t *testing.T) {
	url := migrated(t)
	store := instance(t, url)
	ctx := context.Background()
	hold(t, url, 5)
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	psql(t, url, `INSERT INTO job_runs (job, slot, instance_id, term) VALUES ('old', '2020-01-01', 'x', 1)`)

	if won, err := store.ClaimRun(ctx, "j", slot, "stale", 4); won || !errors.Is(err, worker.ErrNotLeader) {
		t.Errorf("claim with a stale term = %v, %v; want ErrNotLeader", won, err)
	}
	if won, err := store.ClaimRun(ctx, "j", slot, "live", 5); !won || err != nil {
		t.Fatalf("claim with the live term = %v, %v", won, err)
	}
	if err := store.FinishRun(ctx, "j", slot, 4, nil); !errors.Is(err, worker.ErrNotLeader) {
		t.Errorf("finish with a stale term: %v, want ErrNotLeader", err)
	}
	if n, err := store.PurgeRuns(ctx, time.Now(), 4); n != 0 || !errors.Is(err, worker.ErrNotLeader) {
		t.Errorf("purge with a stale term = %d, %v; want 0, ErrNotLeader", n, err)
	}
	if got := psql(t, url, "SELECT count(*) || ' ' || count(finished_at) FROM job_runs"); got != "2 0" {
		t.Errorf("rows, finished = %s after stale writes, want 2 0", got)
	}
	if err := store.FinishRun(ctx, "j", slot, 5, nil); err != nil {
		t.Errorf("finish with the live term: %v", err)
	}
	if n, err := store.PurgeRuns(ctx, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), 5); n != 1 || err != nil {
		t.Errorf("purge with the live term = %d, %v; want 1", n, err)
	}

	psql(t, url, "UPDATE leader_lease SET expires_at = now()")
	if won, err := store.ClaimRun(ctx, "j", slot.Add(time.Minute), "live", 5); won || !errors.Is(err, worker.ErrNotLeader) {
		t.Errorf("claim with an expired lease = %v, %v; want ErrNotLeader", won, err)
	}
}

func s2name(i int) string { return string(rune('a' + i)) }

// TestThreeInstancesWithElection runs the real thing: three instances, each
// with its elector and scheduler, a short interval, and the leader's lease
// taken from it twice (expired, as if it had frozen). Every slot runs at
// most once, slots go on being run across takeovers, each takeover
// records a greater term, and each term's runs are by one instance.
func TestThreeInstancesWithElection(t *testing.T) {
	url := migrated(t)
	// Not faster: each election attempt has one poll to connect and
	// answer, and at 100ms a machine at load 13 elected no one in 10s.
	const (
		interval = time.Second
		poll     = 500 * time.Millisecond
	)
	var c counter
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var scheds []*worker.Scheduler
	var electors []*postgres.Elector
	for i := range 3 {
		name := s2name(i)
		s := worker.New(instance(t, url), name, interval, quiet)
		s.Add(c.job(name))
		e := postgres.NewElector(url, name, poll, quiet)
		scheds, electors = append(scheds, s), append(electors, e)
		wg.Go(func() { e.Run(ctx, s.Run) })
	}
	stopAll := func() { cancel(); wg.Wait() }
	defer stopAll()

	admin, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// Each takeover waits for a slot run under the term before it, rather
	// than for a fixed time: on a loaded machine the first election alone
	// can take longer than a second, and a lease taken before anyone holds
	// it takes nothing.
	term := ranAfter(t, admin, 0)
	for range 2 {
		if _, err := admin.Exec(ctx, `UPDATE leader_lease SET holder = 'frozen', expires_at = now()`); err != nil {
			t.Fatalf("take the lease: %v", err)
		}
		term = ranAfter(t, admin, term)
	}
	time.Sleep(2 * interval)
	stopAll()

	assertOneRunPerSlot(t, url)
	var fenced int64
	for _, s := range scheds {
		fenced += s.Fenced()
	}
	byInstance := psql(t, url, `SELECT instance_id || '=' || count(*) FROM job_runs
		GROUP BY instance_id ORDER BY 1`)
	slots := atoi(t, psql(t, url, "SELECT count(*) FROM job_runs"))
	span := psql(t, url, fmt.Sprintf(`SELECT round(extract(epoch FROM max(slot) - min(slot)) * 1000 / %d)::int + 1
		FROM job_runs`, interval.Milliseconds()))
	missing := atoi(t, span) - slots
	terms := psql(t, url, "SELECT count(DISTINCT term) FROM job_runs")
	t.Logf("3 instances, %s interval, %s poll, lease taken twice: %d slots run (%s), %d missing, %d attempts fenced off, %s terms",
		interval, poll, slots, strings.ReplaceAll(byInstance, "\n", " "), missing, fenced, terms)
	if atoi(t, terms) < 3 {
		t.Errorf("runs under %s terms, want at least 3 (two takeovers)", terms)
	}
	// Which instance takes the lease is up to timing (the one whose lease
	// was taken may win it back: it is not really frozen), but a term is
	// one leadership: all its runs are by one instance.
	if shared := psql(t, url, `SELECT term FROM job_runs GROUP BY term
		HAVING count(DISTINCT instance_id) > 1`); shared != "" {
		t.Errorf("terms with runs by more than one instance: %s", shared)
	}
	// A takeover after an expired lease takes at most one poll, less than
	// an interval, and a new leader runs the current slot at once: no slot
	// should be lost on a quiet machine. On a loaded one a leader whose
	// renew (one poll to answer) comes late steps down, and a slot
	// can pass with none: allow a quarter, so that a leader that stopped
	// running slots altogether still fails.
	if span := missing + slots; missing > max(1, span/4) {
		t.Errorf("%d of %d slots were not run", missing, span)
	}
}

// ranAfter waits until a slot has run under a term greater than after, and
// returns that term.
func ranAfter(t *testing.T, conn *pgx.Conn, after int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var term int64
		if err := conn.QueryRow(context.Background(), "SELECT coalesce(max(term), 0) FROM job_runs").Scan(&term); err != nil {
			t.Fatalf("read the terms: %v", err)
		}
		if term > after {
			return term
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot ran under a term after %d within 10s", after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStepDownCancelsRunningJob: when the leader loses its lease, the job
// it is running sees its context cancelled, and the end of the run, under a
// term that is no longer live, is refused: the row keeps finished_at empty,
// as for a leader that died.
func TestStepDownCancelsRunningJob(t *testing.T) {
	url := migrated(t)
	s := worker.New(instance(t, url), "a", time.Minute, quiet)
	started := make(chan struct{}, 1)
	cancelled := make(chan time.Time, 1)
	s.Add(worker.Job{Name: "block", Run: func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- time.Now()
		return ctx.Err()
	}})
	e := postgres.NewElector(url, "a", 100*time.Millisecond, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx, s.Run) }()
	defer func() { cancel(); <-done }()

	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not start")
	}
	taken := time.Now()
	psql(t, url, `UPDATE leader_lease SET holder = 'other', term = term + 1, expires_at = now() + interval '1 hour'`)
	select {
	case at := <-cancelled:
		t.Logf("job cancelled %s after the lease was taken", at.Sub(taken).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("the running job was not cancelled after the leader lost its lease")
	}
	time.Sleep(200 * time.Millisecond)
	if got := psql(t, url, "SELECT (finished_at IS NULL) || ' ' || term FROM job_runs"); got != "true 1" {
		t.Errorf("run row (unfinished, term) = %q, want the stale finish refused: true 1", got)
	}
}

// TestRunErrorsRecorded: failing and panicking jobs are recorded with their
// error; the scheduler survives both.
func TestRunErrorsRecorded(t *testing.T) {
	url := migrated(t)
	s := worker.New(instance(t, url), "a", time.Minute, quiet)
	s.Add(worker.Job{Name: "fails", Run: func(context.Context) error { return errors.New("disk full") }})
	s.Add(worker.Job{Name: "panics", Run: func(context.Context) error { panic("boom") }})
	s.Add(worker.Job{Name: "works", Run: func(context.Context) error { return nil }})
	ctx, cancel := context.WithCancel(hold(t, url, 1))
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	// Until the three runs of the first slot are recorded (a fixed wait
	// flaked on a loaded machine), then stop the scheduler. Only the first
	// slot is compared: a test that starts just before a minute ends sees
	// the next slot run too, as it should.
	const firstSlot = "slot = (SELECT min(slot) FROM job_runs)"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if psql(t, url, "SELECT count(*) FROM job_runs WHERE finished_at IS NOT NULL AND "+firstSlot) == "3" {
			break
		}
	}
	cancel()
	<-done

	got := psql(t, url, `SELECT job || ':' || instance_id || ':' || (finished_at IS NOT NULL) || ':' || coalesce(error, '-')
		FROM job_runs WHERE `+firstSlot+` ORDER BY job`)
	want := "fails:a:true:disk full\npanics:a:true:job panicked: boom\nworks:a:true:-"
	if got != want {
		t.Errorf("job_runs:\n%s\nwant:\n%s", got, want)
	}
}

// TestPurgeRunsJob deletes runs older than the retention and keeps the rest.
func TestPurgeRunsJob(t *testing.T) {
	url := migrated(t)
	store := instance(t, url)
	psql(t, url, `INSERT INTO job_runs (job, slot, instance_id)
		SELECT 'old', now() - make_interval(days => d), 'a' FROM generate_series(2, 9) d;
		INSERT INTO job_runs (job, slot, instance_id) VALUES ('new', now(), 'a')`)
	job := worker.PurgeRunsJob(store, 24*time.Hour, quiet)
	if err := job.Run(context.Background()); err == nil {
		t.Error("purge without a leader term: no error")
	}
	if err := job.Run(worker.WithTerm(context.Background(), 1)); !errors.Is(err, worker.ErrNotLeader) {
		t.Errorf("purge with a term that was never live: %v, want ErrNotLeader", err)
	}
	if err := job.Run(hold(t, url, 1)); err != nil {
		t.Fatal(err)
	}
	if got := psql(t, url, "SELECT string_agg(job, ',') FROM job_runs"); got != "new" {
		t.Errorf("left after purge: %q, want only the recent run", got)
	}
}

// TestRecentRuns checks the store's listing: latest slot first, limit, and
// the unfinished and failed shapes.
func TestRecentRuns(t *testing.T) {
	url := migrated(t)
	store := instance(t, url)
	ctx := hold(t, url, 1)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		slot := base.Add(time.Duration(i) * time.Minute)
		if won, err := store.ClaimRun(ctx, "j", slot, "a", 1); err != nil || !won {
			t.Fatalf("claim %s: %v %v", slot, won, err)
		}
		if i < 2 {
			var runErr error
			if i == 1 {
				runErr = errors.New("failed")
			}
			if err := store.FinishRun(ctx, "j", slot, 1, runErr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if won, err := store.ClaimRun(ctx, "j", base, "b", 1); err != nil || won {
		t.Fatalf("second claim of a slot = %v, %v; want false", won, err)
	}
	runs, err := store.RecentRuns(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !runs[0].Slot.Equal(base.Add(2*time.Minute)) || runs[0].FinishedAt != nil ||
		runs[1].Error != "failed" || runs[1].FinishedAt == nil || runs[1].InstanceID != "a" || runs[0].Term != 1 {
		t.Errorf("RecentRuns(2) = %+v", runs)
	}
}
