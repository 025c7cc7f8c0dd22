package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationFiles are the schema changes, applied in version order. Every
// feature that needs tables adds the next numbered file here (the worker
// adds 00002_job_runs.sql); the pattern picks new files up with no code
// change. A file that was applied anywhere must never be edited: add a new
// one instead.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Applied is one migration that this call applied.
type Applied struct {
	Version  int64
	File     string
	Duration time.Duration
}

// Migrate applies the embedded migrations; see the package function Migrate.
func (db *DB) Migrate(ctx context.Context, log *slog.Logger) ([]Applied, error) {
	return Migrate(ctx, db.url, Migrations(), log)
}

// migrationLock makes instances that start together apply each migration
// exactly once: Migrate holds it, on a connection of its own, around the
// whole of goose's Up, which re-reads the applied versions under it and
// applies only what is still pending; the others wait, then find nothing
// left to do. It is a session-level advisory lock, so PostgreSQL drops it by
// itself when a migrating process dies: it never sticks.
//
// Why not goose's own lock.NewPostgresSessionLocker: it polls
// pg_try_advisory_lock at a constant period counted in whole seconds (5 s by
// default, 1 s at least). Instances started together poll in step, so at
// each tick one of them wins and the rest collide again: with the 1 s
// minimum, 8 instances measured 2 to 5 s, a second per loser in the worst
// case. This lock waits in PostgreSQL's own lock queue instead
// (pg_advisory_lock), which wakes the next waiter the moment the lock is
// released: no polling.
//
// Why around Up rather than through goose.WithSessionLocker: Up first checks
// for pending migrations (HasPending) without the session lock, and that
// check creates goose's version table on an empty database. Instances
// started together raced there, and each loser retried after goose's
// constant 1 s back-off: every storm on an empty database took 1 s more than
// one instance alone (make bench, migration storm). Under this lock the
// first instance creates the table and the others find it. It uses goose's
// lock id, so it also excludes a goose tool migrating with goose's locker.
type migrationLock struct{}

var _ lock.SessionLocker = migrationLock{}

// lockWait bounds the wait for another instance's migration, as goose's
// default does (5 min); past it the instance fails to start with an error
// instead of hanging. Longer migrations belong in the migrate command.
const lockWait = 5 * time.Minute

func (migrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	// This session only waits for the lock: lockWait bounds it, not the
	// migration timeouts (lock_timeout also applies to advisory locks).
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = 0; SET statement_timeout = 0"); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", lock.DefaultLockID); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	return nil
}

func (migrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var unlocked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID).Scan(&unlocked); err != nil {
		return fmt.Errorf("release the migration lock: %w", err)
	}
	if !unlocked {
		return errors.New("release the migration lock: it was not held")
	}
	return nil
}

// The migration session's settings. Values given in DATABASE_URL win.
//
//   - lock_timeout: a schema change waits for its table lock (ACCESS
//     EXCLUSIVE for most ALTER TABLE) behind every running transaction on
//     the table, and every query that comes after waits behind it: a long
//     report stalls the whole table. After lockMigrationTimeout the
//     migration fails instead (the instance does not start, and a restart
//     tries again) and the queue drains.
//   - statement_timeout: no single statement of a migration runs longer than
//     statementMigrationTimeout while holding its locks. A longer backfill
//     belongs in batches (see the README, "Schema changes under rolling
//     deploys"), or in the migrate command with a larger value in its
//     DATABASE_URL.
//   - keepalives, tcp_user_timeout and client_connection_check_interval: a
//     migrating host that vanishes (crash of the machine, partition) leaves
//     no one to close its socket, and the server would keep its session, its
//     open transaction and its ACCESS EXCLUSIVE locks for the kernel's
//     default of about two hours. With these, the server notices within
//     about 10 s, even during a long statement, rolls back and frees the
//     locks. They apply to TCP only (a Unix socket cannot be partitioned).
const (
	lockMigrationTimeout      = "10s"
	statementMigrationTimeout = "5min"
)

var migrationParams = map[string]string{
	"lock_timeout":                     lockMigrationTimeout,
	"statement_timeout":                statementMigrationTimeout,
	"tcp_keepalives_idle":              "5", // seconds
	"tcp_keepalives_interval":          "1",
	"tcp_keepalives_count":             "3",
	"tcp_user_timeout":                 "8000", // ms
	"client_connection_check_interval": "2000", // ms; PostgreSQL 14 and later
	"application_name":                 "migrate",
}

// openMigrationDB is the database/sql handle goose runs on, with the
// migration session's settings (server side) and TCP keepalives (client
// side, so that a vanished server fails the migration instead of hanging).
func openMigrationDB(url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err // pgx redacts the password in its parse errors
	}
	for name, value := range migrationParams {
		if _, set := cfg.RuntimeParams[name]; !set {
			cfg.RuntimeParams[name] = value
		}
	}
	dialer := &net.Dialer{
		Timeout: 5 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3,
		},
	}
	cfg.DialFunc = dialer.DialContext
	return stdlib.OpenDB(*cfg), nil
}

// Migrate applies the pending migrations of fsys to the database at url,
// under the migration lock, and logs each one it applied. It opens a
// database/sql handle of its own for goose and closes it before returning.
// It returns what this call applied: nothing when another instance got there
// first or the schema is current.
func Migrate(ctx context.Context, url string, fsys fs.FS, log *slog.Logger) ([]Applied, error) {
	start := time.Now()
	sqlDB, err := openMigrationDB(url)
	if err != nil {
		return nil, fmt.Errorf("migrate: open database: %w", err)
	}
	defer sqlDB.Close()
	// One connection holds the lock, goose runs the SQL migrations on a
	// second, and a Go migration, should one be added, on a third. Capped so
	// that a storm of instances starting together costs the server at most
	// three connections each on top of their pools (two while waiting).
	sqlDB.SetMaxOpenConns(3)

	// The lock is held around the whole of Up; see migrationLock.
	lockConn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer lockConn.Close()
	if err := (migrationLock{}).SessionLock(ctx, lockConn); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err := (migrationLock{}).SessionUnlock(context.WithoutCancel(ctx), lockConn); err != nil {
			log.Warn("migrate: closing the connection releases the lock instead", "err", err)
		}
	}()

	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
		// Only the files in fsys, not Go migrations a dependency might
		// have registered globally.
		goose.WithDisableGlobalRegistry(true),
		// Each feature owns its migrations, numbered when the feature was
		// written: a feature added to a project later (scaffold new --force
		// with more features) can bring files numbered below ones already
		// applied. goose would refuse them as "missing"; they are applied
		// first instead. Migrations of different features touch different
		// tables, so their order across features does not matter.
		goose.WithAllowOutofOrder(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	results, err := provider.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		// The migrations before the failed one were applied (each in its
		// own transaction) and are reported as such.
		results = partial.Applied
	}
	applied := make([]Applied, 0, len(results))
	for _, r := range results {
		a := Applied{Version: r.Source.Version, File: r.Source.Path, Duration: r.Duration}
		applied = append(applied, a)
		log.Info("migration applied", "version", a.Version, "file", a.File,
			"duration_ms", float64(a.Duration.Microseconds())/1000)
	}
	if partial != nil && partial.Failed != nil {
		return applied, fmt.Errorf("migrate: version %d (%s): %w",
			partial.Failed.Source.Version, partial.Failed.Source.Path, partial.Err)
	}
	if err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	if err := migrateQueue(ctx, url, log); err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}

	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return applied, fmt.Errorf("migrate: read schema version: %w", err)
	}
	log.Info("migrations done", "applied", len(applied), "schema_version", version,
		"duration_ms", float64(time.Since(start).Microseconds())/1000)
	return applied, nil
}
