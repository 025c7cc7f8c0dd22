package postgres

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3/lock"

	"example.com/acme/notes/testsupport"
)

const stormInstances = 8

// storm runs Migrate of fsys from n goroutines at once against url, each
// with its own database/sql handle and goose Provider like separate
// instances would, released together by a start barrier. It returns what
// each applied and how long the slowest took.
func storm(t *testing.T, url string, fsys fs.FS, n int) ([][]Applied, time.Duration) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		applied     = make([][]Applied, n)
		errs        = make([]error, n)
		took        = make([]time.Duration, n)
	)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			t0 := time.Now()
			applied[i], errs[i] = Migrate(context.Background(), url, fsys, log)
			took[i] = time.Since(t0)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	total := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	t.Logf("migration storm: %d instances settled in %v (per instance: %v)", n, total.Round(time.Millisecond), roundAll(took))
	return applied, total
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return out
}

// TestMigrationStormRunsBodyOnce proves "exactly once" by a side effect:
// the probe migration inserts a row into a table the test created
// beforehand, and sleeps while holding the lock so that the other instances
// surely arrive while it runs. Had the body run twice, there would be two
// rows. It storms an empty database (first deploy: goose also races to
// create its version table) and a migrated one that gets a new migration
// (a rolling deploy).
func TestMigrationStormRunsBodyOnce(t *testing.T) {
	first := []byte("-- +goose Up\nCREATE TABLE first (id int);\n")
	probe := []byte(`-- +goose Up
INSERT INTO storm_runs (backend_pid) VALUES (pg_backend_pid());
SELECT pg_sleep(0.3);
CREATE TABLE probe (id int);

-- +goose Down
DROP TABLE probe;
`)
	t.Run("empty database", func(t *testing.T) {
		url := testsupport.Postgres(t)
		testsupport.PSQL(t, url, `CREATE TABLE storm_runs (backend_pid int NOT NULL)`)
		applied, _ := storm(t, url, fstest.MapFS{"00001_probe.sql": {Data: probe}}, stormInstances)
		checkRanOnce(t, url, applied, 1)
	})
	t.Run("new migration", func(t *testing.T) {
		url := testsupport.Postgres(t)
		testsupport.PSQL(t, url, `CREATE TABLE storm_runs (backend_pid int NOT NULL)`)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if _, err := Migrate(context.Background(), url, fstest.MapFS{"00001_first.sql": {Data: first}}, log); err != nil {
			t.Fatal(err)
		}
		applied, _ := storm(t, url, fstest.MapFS{
			"00001_first.sql": {Data: first},
			"00002_probe.sql": {Data: probe},
		}, stormInstances)
		checkRanOnce(t, url, applied, 2)
	})
}

func checkRanOnce(t *testing.T, url string, applied [][]Applied, version int64) {
	t.Helper()
	appliers := 0
	for _, a := range applied {
		if len(a) > 0 {
			appliers++
		}
	}
	if appliers != 1 {
		t.Errorf("%d instances report applying the migration, want exactly 1", appliers)
	}
	if got := testsupport.PSQL(t, url, `SELECT count(*) FROM storm_runs`); got != "1" {
		t.Errorf("the migration body ran %s times, want exactly 1", got)
	}
	q := fmt.Sprintf(`SELECT count(*) FROM goose_db_version WHERE version_id = %d`, version)
	if got := testsupport.PSQL(t, url, q); got != "1" {
		t.Errorf("goose_db_version has %s rows for version %d, want 1", got, version)
	}
}

// TestMigrationStormRealMigrations runs the service's own migrations (all
// features' files) the same way: all instances succeed, each version is
// recorded once, and the schema is there.
func TestMigrationStormRealMigrations(t *testing.T) {
	url := testsupport.Postgres(t)
	files, err := fs.Glob(Migrations(), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v %v", files, err)
	}

	applied, _ := storm(t, url, Migrations(), stormInstances)

	total := 0
	for _, a := range applied {
		total += len(a)
	}
	if total != len(files) {
		t.Errorf("the instances applied %d migrations between them, want %d (%v)", total, len(files), files)
	}
	dups := testsupport.PSQL(t, url, `SELECT count(*) FROM (SELECT version_id FROM goose_db_version
		WHERE version_id > 0 GROUP BY version_id HAVING count(*) > 1) d`)
	if dups != "0" {
		t.Errorf("%s versions are recorded more than once in goose_db_version", dups)
	}
	versions := testsupport.PSQL(t, url, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`)
	if versions != fmt.Sprint(len(files)) {
		t.Errorf("goose_db_version has %s applied versions, want %d", versions, len(files))
	}
	if got := testsupport.PSQL(t, url, `SELECT to_regclass('public.notes') IS NOT NULL`); got != "t" {
		t.Errorf("table notes missing after the storm")
	}
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	url := testsupport.Postgres(t)
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx := context.Background()

	first, err := Migrate(ctx, url, Migrations(), log)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || first[0].Version != 1 || first[0].File != "00001_notes.sql" {
		t.Fatalf("first Migrate applied %+v, want 00001_notes.sql first", first)
	}
	if !strings.Contains(logs.String(), `"msg":"migration applied","version":1,"file":"00001_notes.sql"`) {
		t.Errorf("no log line for the applied migration in:\n%s", logs.String())
	}
	second, err := Migrate(ctx, url, Migrations(), log)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second Migrate applied %+v, want nothing", second)
	}
}

// A feature added later brings migrations numbered below ones already
// applied (a project with only db has applied 00001 and 00005 when the
// worker's 00002..00004 arrive): they are applied, not refused as missing.
func TestMigrateAppliesFeatureAddedLater(t *testing.T) {
	url := testsupport.Postgres(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	table := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("-- +goose Up\nCREATE TABLE " + name + " (id int);\n")}
	}
	before := fstest.MapFS{"00001_a.sql": table("a"), "00005_e.sql": table("e")}
	if _, err := Migrate(context.Background(), url, before, log); err != nil {
		t.Fatal(err)
	}
	after := fstest.MapFS{"00001_a.sql": table("a"), "00002_b.sql": table("b"), "00005_e.sql": table("e")}
	applied, err := Migrate(context.Background(), url, after, log)
	if err != nil {
		t.Fatalf("a migration numbered below an applied one: %v", err)
	}
	if len(applied) != 1 || applied[0].Version != 2 {
		t.Fatalf("applied = %+v, want version 2 only", applied)
	}
}

func TestMigrateReportsFailedMigration(t *testing.T) {
	url := testsupport.Postgres(t)
	fsys := fstest.MapFS{
		"00001_ok.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE ok (id int);\n")},
		"00002_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE ok (id int);\n")},
	}
	applied, err := Migrate(context.Background(), url, fsys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "version 2 (00002_bad.sql)") {
		t.Fatalf("err = %v, want one naming version 2", err)
	}
	if len(applied) != 1 || applied[0].Version != 1 {
		t.Fatalf("applied = %+v, want version 1 only", applied)
	}
}

// An instance waits while another holds the migration lock, gives up with
// an error when its context ends, and migrates once the lock is free.
func TestMigrateWaitsForTheLock(t *testing.T) {
	url := testsupport.Postgres(t)
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", lock.DefaultLockID); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := Migrate(short, url, Migrations(), log); err == nil || !strings.Contains(err.Error(), "migration lock") {
		t.Fatalf("Migrate while the lock is held: %v, want a lock wait error", err)
	}
	if got := testsupport.PSQL(t, url, `SELECT to_regclass('public.notes') IS NULL`); got != "t" {
		t.Fatal("notes table created without the lock")
	}

	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(200 * time.Millisecond)
		_, _ = holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID)
	}()
	defer func() { <-released }() // before holder.Close
	t0 := time.Now()
	applied, err := Migrate(ctx, url, Migrations(), log)
	if err != nil || len(applied) == 0 {
		t.Fatalf("Migrate after the lock is released: %v %v", applied, err)
	}
	t.Logf("migrated in %v, the lock being released after 200ms", time.Since(t0).Round(time.Millisecond))
}

// TestMigrationSessionSettings: migrations run with a lock timeout, a
// statement timeout and TCP keepalives, so a migration can neither queue a
// table behind it for long nor keep its locks after its host vanished.
func TestMigrationSessionSettings(t *testing.T) {
	url := testsupport.Postgres(t)
	fsys := fstest.MapFS{"00001_settings.sql": {Data: []byte(`-- +goose Up
CREATE TABLE seen AS SELECT concat_ws(',',
	current_setting('lock_timeout'), current_setting('statement_timeout'),
	current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),
	current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout'),
	current_setting('client_connection_check_interval')) AS s;
`)}}
	if _, err := Migrate(context.Background(), url, fsys, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// The test server is on TCP (a Unix socket would read 0 for the TCP ones).
	if got, want := testsupport.PSQL(t, url, "SELECT s FROM seen"), "10s,5min,5,1,3,8000,2s"; got != want {
		t.Errorf("migration session settings = %s, want %s", got, want)
	}
}

// TestMigrationLockTimeout: a migration whose table is locked by a long
// transaction fails after lock_timeout instead of waiting (and making every
// later query of the table wait behind it).
func TestMigrationLockTimeout(t *testing.T) {
	url := testsupport.Postgres(t)
	testsupport.PSQL(t, url, "CREATE TABLE busy (id int)")
	holder, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), "SELECT * FROM busy"); err != nil { // ACCESS SHARE until commit
		t.Fatal(err)
	}
	fsys := fstest.MapFS{"00001_alter.sql": {Data: []byte("-- +goose Up\nALTER TABLE busy ADD COLUMN x int;\n")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Migrate(ctx, url, fsys, slog.New(slog.DiscardHandler))
	took := time.Since(start)
	t.Logf("migration behind a lock: %v after %s", err, took.Round(time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "lock timeout") || took > 20*time.Second {
		t.Errorf("migration behind a held lock: err %v after %s, want a lock timeout after about %s", err, took, lockMigrationTimeout)
	}
}
