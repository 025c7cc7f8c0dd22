package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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

// Invalidate implements Cache. With one instance, dropping the key here is
// dropping it everywhere; no value is cached until done, or for
// uncertainWrite after a failed COMMIT (which may still take effect).
func (m *Memory) Invalidate(ctx context.Context, key string) (done func(committed bool), err error) {
	m.lru.Begin(key)
	var once sync.Once
	return func(committed bool) {
		once.Do(func() {
			if committed {
				m.lru.End(key)
			} else {
				time.AfterFunc(uncertainWrite, func() { m.lru.End(key) })
			}
		})
	}, nil
}

// uncertainWrite is how long a key stays uncached after a failed COMMIT.
const uncertainWrite = 5 * time.Second

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
// its own ctx is done. fn gets at most loadTimeout.
func Flight[T any](ctx context.Context, g *singleflight.Group, name string, fn func(context.Context) (T, error)) (T, error) {
	ch := g.DoChan(name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return fn(ctx)
	})
	var zero T
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// loadTimeout bounds a shared load, which no caller's deadline bounds.
const loadTimeout = 10 * time.Second
