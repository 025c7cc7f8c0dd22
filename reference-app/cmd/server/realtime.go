package main

import (
	"context"
	"log/slog"

	"example.com/acme/shop/config"
	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/postgres"
	"example.com/acme/shop/realtime"
	"example.com/acme/shop/redis"
)

// openEvents serves GET /api/events from the event log in Redis: every
// committed write of a note is published to it after the cache's
// invalidation (notes.BeforeCommit), and one loop per instance reads it for
// the local streams. Without REDIS_URL there is no log to share: the route
// is not served. The returned func stops the loop and closes the
// connections, after the server has drained (the streams ended at the
// drain).
func openEvents(ctx context.Context, cfg config.Config, log *slog.Logger, opts *httpapi.Options, notes *postgres.NoteStore) (func(), error) {
	if cfg.RedisURL == "" {
		log.Warn("events: no REDIS_URL, GET /api/events is not served")
		return func() {}, nil
	}
	stream, err := redis.NewEvents(redis.EventsOptions{URL: cfg.RedisURL, Prefix: cfg.CachePrefix, MaxLen: int64(cfg.EventsRetention)})
	if err != nil {
		return nil, err
	}
	notes.BeforeCommit = realtime.Publish(notes.BeforeCommit, notes.NoteChange, stream, log)
	hub := realtime.NewHub(stream, log)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		hub.Run(ctx)
	}()
	opts.Events = hub
	log.Info("events", "retention", cfg.EventsRetention)
	return func() {
		cancel()
		stream.Close() // ends the loop's blocking read at once
		<-done
	}, nil
}
