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
	// Delete invalidates key. Call it after every write to the source of
	// truth. When Delete returns nil, no Get that starts afterwards, on
	// any instance, returns a value older than that write.
	Delete(ctx context.Context, key string) error
	// Check reports whether the cache's server answers (nil for Memory).
	Check(ctx context.Context) error
	// Close stops background work and releases connections.
	Close() error
}

// now is replaced in tests.
var now = time.Now
