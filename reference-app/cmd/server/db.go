package main

import (
	"context"
	"log/slog"

	"example.com/acme/shop/config"
	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/postgres"
)

// database is the pool and the note store on it, which the features wired
// after db build on (the cache hooks into the store, the worker uses the
// pool).
type database struct {
	*postgres.DB
	notes *postgres.NoteStore
}

// openDB opens the pool, applies the migrations when MIGRATE_ON_START is
// on, and serves the notes API from it. PostgreSQL is critical for
// readiness: an instance that cannot reach it leaves the rotation. Close
// the pool only after the server has drained.
func openDB(ctx context.Context, cfg config.Config, log *slog.Logger, opts *httpapi.Options) (database, error) {
	db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DBPoolSize)
	if err != nil {
		return database{}, err
	}
	log.Info("database pool", "pool_size", cfg.DBPoolSize)
	if cfg.MigrateOnStart {
		if _, err := db.Migrate(ctx, log); err != nil {
			db.Close()
			return database{}, err
		}
	}
	opts.Checks = append(opts.Checks, httpapi.Check{Name: "postgres", Critical: true, Check: db.Ping})
	notes := postgres.NewNoteStore(db)
	opts.Notes = notes
	return database{DB: db, notes: notes}, nil
}
