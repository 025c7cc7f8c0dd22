package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/sync/singleflight"
)

// Memory is the single-node cache: an in-process LRU with a TTL. It is
// correct only while one instance serves the data; cluster mode refuses it
// (config: REDIS_URL), because each instance's memory would go stale when
// another instance writes.
type Memory struct {
	lru    *LRU
	flight singleflight.Group
}

var _ Cache = (*Memory)(nil)

// NewMemory returns a cache of at most size entries that live for ttl.
// size 0 disables caching: every Get loads.
func NewMemory(size int, ttl time.Duration) *Memory {
	return &Memory{lru: NewLRU(size, ttl)}
}

// Get implements Cache.
func (m *Memory) Get(ctx context.Context, key string, v any, load func(context.Context) (any, error)) (Source, error) {
	if b, ok := m.lru.Get(key); ok {
		if err := json.Unmarshal(b, v); err == nil {
			return SourceLocal, nil
		}
	}
	stamp := m.lru.Stamp(key)
	b, err := Flight(ctx, &m.flight, FlightKey(key, stamp), func(ctx context.Context) ([]byte, error) {
		val, err := load(ctx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(val)
		if err != nil {
			return nil, fmt.Errorf("cache: encode %q: %w", key, err)
		}
		m.lru.SetIf(key, b, stamp)
		return b, nil
	})
	if err != nil {
		return SourceMiss, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return SourceMiss, fmt.Errorf("cache: decode %q: %w", key, err)
	}
	return SourceMiss, nil
}

// Delete implements Cache. With one instance, dropping the key here is
// dropping it everywhere.
func (m *Memory) Delete(ctx context.Context, key string) error {
	m.lru.Invalidate(key)
	return nil
}

// Check implements Cache: memory always answers.
func (m *Memory) Check(ctx context.Context) error { return nil }

// Close implements Cache.
func (m *Memory) Close() error { return nil }

// FlightKey names a single-flight load of key. It includes the stamp so that
// a Get that starts after an invalidation never joins a load that started
// before it (and so could return the old value).
func FlightKey(key string, s Stamp) string {
	return fmt.Sprintf("%d.%d.%s", s.epoch, s.gen, key)
}

// Flight runs fn once for all concurrent callers of the same name. fn runs
// without the caller's cancellation, so one client going away does not fail
// the others waiting on the same load; each caller still stops waiting when
// its own ctx is done.
func Flight(ctx context.Context, g *singleflight.Group, name string, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	ch := g.DoChan(name, func() (any, error) {
		return fn(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
