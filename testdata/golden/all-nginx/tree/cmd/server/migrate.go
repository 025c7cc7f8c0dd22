package main

import (
	"context"
	"log/slog"

	"example.com/acme/shop/config"
	"example.com/acme/shop/postgres"
)

// migrate applies the pending database migrations and returns: the
// "migrate" command, for deployments that run migrations as a release step
// (MIGRATE_ON_START=false) rather than at every start. It logs each applied
// migration as a JSON line; with nothing pending it applies nothing and
// succeeds, so running it twice is safe.
func migrate(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	_, err := postgres.Migrate(ctx, cfg.DatabaseURL, postgres.Migrations(), log)
	return err
}
