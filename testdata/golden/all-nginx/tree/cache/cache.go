// Package cache is the service's read cache: a small interface, the
// single-node in-memory implementation (Memory), and the local tier (LRU)
// that the distributed implementation in package redis reuses.
package cache

import (
	"context"
	"time"
)

// Source says where a Get found its value.
type Source string

const (
	SourceLocal Source = "local" // this process's memory
	SourceRedis Source = "redis" // the shared Redis tier
	SourceMiss  Source = "miss"  // neither: load was called (or a concurrent load was shared)
)

// Cache is a cache-aside read cache for values that are stored elsewhere
// (the database is the source of truth).
//
// Values are copied in and out (encoded), so callers may change what they get.
type Cache interface {
	// Get decodes the cached value of key into v (a pointer). On a miss it
	// calls load, at most once at a time per key in this process, caches
	// what load returned and decodes it into v. An error from load is
	// returned as is and nothing is cached.
	Get(ctx context.Context, key string, v any, load func(ctx context.Context) (any, error)) (Source, error)
	// Invalidate is called by every write of key's value at the source,
	// inside the write's transaction, after the write and just before
	// COMMIT; done is called after the COMMIT, with false if it failed
	// (then it may or may not have taken effect). From when Invalidate
	// returns nil until done, no Get on any instance returns a value older
	// than the write, nor caches anything for key; after done(true), Gets
	// load and cache the new value; after done(false), nothing is cached
	// for key until the fence is over. An error means the
	// other instances could not be told: roll the write back (nothing is
	// lost, the client is told to retry).
	//
	// The distributed implementation needs the COMMIT to happen within a
	// bounded time of Invalidate (its WriteWindow); see package redis and
	// postgres.NoteStore for how the transaction guarantees it.
	Invalidate(ctx context.Context, key string) (done func(committed bool), err error)
	// Check reports whether the cache's server answers (nil for Memory).
	Check(ctx context.Context) error
	// Close stops background work and releases connections.
	Close() error
}

// now is replaced in tests.
var now = time.Now
