// Package postgres holds everything that talks to PostgreSQL: the pgx
// connection pool, the goose migrations run under a lock, and the
// implementation of notes.Store.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the connection pool of one instance.
type DB struct {
	pool *pgxpool.Pool
	url  string // kept for the migration's own database/sql handle
}

// Open connects a pool of at most poolSize connections and checks that the
// server answers. Every instance opens its own pool, so the connections a
// deployment needs are replicas x poolSize; see the README for the sizing
// rule.
func Open(ctx context.Context, url string, poolSize int) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("postgres: DATABASE_URL: %w", err)
	}
	cfg.MaxConns = int32(poolSize)
	// No idle connections are held open on purpose: an instance that is not
	// busy gives its share of max_connections back to the others.
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	// The health check closes connections the server or a proxy dropped
	// before a request picks them up.
	cfg.HealthCheckPeriod = 30 * time.Second
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	db := &DB{pool: pool, url: url}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Ping checks that a connection can be had and the server answers. It is
// the readiness check of the instance.
//
// A connection the server ended while it sat in the pool (PostgreSQL
// restarted, or an administrator terminated it) fails its first use, and
// the pool drops it. The pool tests a connection idle for over a second
// before it lends it out, but one used less than a second ago (a busy
// instance, the queue's polling) is lent as it is. So a failed ping is
// tried once more, on another connection: one dead connection is not a
// database that is down.
func (db *DB) Ping(ctx context.Context) error {
	err := db.pool.Ping(ctx)
	if err != nil && ctx.Err() == nil {
		err = db.pool.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close waits for connections in use to be returned, then closes them all.
func (db *DB) Close() { db.pool.Close() }

// Pool gives other packages of the service (the worker) the shared pool.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// unavailable reports whether err says that the database cannot be reached
// or cannot serve right now - a refused, reset or closed connection, a
// server shutting down, starting up or out of connections - rather than
// that a statement failed. Such errors are temporary: the HTTP layer
// answers 503 with Retry-After instead of 500.
func unavailable(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // whatever the server said: no session, no statement
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || // connection exception
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || // shutdown, crash, starting up
			pgErr.Code == "53300" || // too many connections
			pgErr.Code == "55P03" // lock_timeout: a busy row; nothing changed, a retry may succeed
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) // never sent: a connection found closed
}
