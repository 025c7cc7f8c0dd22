package main

import (
	"log/slog"

	"example.com/acme/shop/cache"
	"example.com/acme/shop/config"
	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/postgres"
	"example.com/acme/shop/redis"
)

// openCache puts a cache in front of the notes: Redis when REDIS_URL is
// set, else memory (single-node only; config refuses it in cluster mode).
// Every update and delete of a note invalidates it before it commits. A
// Redis that fails sends reads to the database and fails writes of notes
// with 503 (nothing written), so its readiness check is not critical. The
// returned func closes it, after the server has drained.
func openCache(cfg config.Config, log *slog.Logger, opts *httpapi.Options, notes *postgres.NoteStore) (func(), error) {
	var noteCache cache.Cache = cache.NewMemory(cfg.CacheLocalSize, cfg.CacheTTL)
	if cfg.RedisURL != "" {
		rc, err := redis.New(redis.Options{URL: cfg.RedisURL, Prefix: cfg.CachePrefix, TTL: cfg.CacheTTL, LocalSize: cfg.CacheLocalSize, Logger: log})
		if err != nil {
			return nil, err
		}
		noteCache = rc
		opts.Checks = append(opts.Checks, httpapi.Check{Name: "redis", Critical: false, Check: rc.Check})
	}
	opts.Cache = noteCache
	notes.BeforeCommit = httpapi.InvalidateNote(noteCache)
	log.Info("cache", "redis", cfg.RedisURL != "", "local_size", cfg.CacheLocalSize, "ttl", cfg.CacheTTL.String())
	return func() { noteCache.Close() }, nil
}
