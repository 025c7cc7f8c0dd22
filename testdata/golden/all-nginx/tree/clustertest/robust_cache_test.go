package clustertest

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/acme/shop/testsupport"
)

// The nemeses of the cache: Redis killed, frozen, restarted empty, its keys
// lost or evicted, and one instance cut off from it (see robust_test.go).
func TestRobustCache(t *testing.T) {
	runNemeses(t, []nemesis{
		{name: "redis-sigkill", inject: func(t *testing.T, r *robustRun) func() {
			r.c.redis.Kill(t)
			return func() { r.c.redis.Start(t) }
		}},
		{name: "redis-sigstop", inject: func(t *testing.T, r *robustRun) func() {
			r.c.redis.Signal(t, syscall.SIGSTOP)
			return func() { r.c.redis.Signal(t, syscall.SIGCONT) }
		}},
		{name: "redis-restarted-empty", inject: func(t *testing.T, r *robustRun) func() {
			r.c.redis.Kill(t)
			r.c.redis.Start(t) // no persistence: it comes back empty
			return func() {}
		}},
		{name: "redis-flushall", inject: func(t *testing.T, r *robustRun) func() {
			return r.redisRepeat(t, func(ctx context.Context, rdb *redis.Client) {
				rdb.FlushAll(ctx)
			})
		}},
		{name: "redis-cache-keys-deleted", inject: func(t *testing.T, r *robustRun) func() {
			return r.redisRepeat(t, func(ctx context.Context, rdb *redis.Client) {
				keys, _ := rdb.Keys(ctx, "shop:*").Result() // CACHE_PREFIX: the service name
				if len(keys) > 0 {
					rdb.Del(ctx, keys...)
				}
			})
		}},
		{name: "redis-eviction-maxmemory", inject: func(t *testing.T, r *robustRun) func() {
			ctx := context.Background()
			rdb := r.redisClient(t)
			used := int64(0)
			if info, err := rdb.Info(ctx, "memory").Result(); err == nil {
				for _, line := range strings.Split(info, "\r\n") {
					if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
						used, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					}
				}
			}
			rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru")
			rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+256<<10, 10))
			// Filler keys push the cache's keys out.
			stop := r.redisRepeat(t, func(ctx context.Context, rdb *redis.Client) {
				for i := 0; i < 50; i++ {
					rdb.Set(ctx, "filler:"+strconv.FormatInt(time.Now().UnixNano(), 10), strings.Repeat("x", 8<<10), time.Minute)
				}
			})
			return func() {
				stop()
				rdb.ConfigSet(ctx, "maxmemory", "0")
			}
		}},
		{name: "redis-blackhole-one-instance", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].redisProxy
			t.Logf("%s: %d connections to Redis through its proxy", r.c.apps[0].name, p.Conns())
			p.Set(testsupport.Blackhole)
			return p.Heal
		}},
		{name: "redis-oneway-to-instance-lost", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].redisProxy
			p.Set(testsupport.DropToClient) // its commands reach Redis; replies and pub/sub do not
			return p.Heal
		}},
		{name: "redis-oneway-from-instance-lost", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].redisProxy
			p.Set(testsupport.DropToTarget)
			return p.Heal
		}},
	})
}

// redisClient connects the test to the cluster's Redis (not through any
// instance's proxy).
func (r *robustRun) redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(r.c.redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// redisRepeat runs f against Redis every 200ms until the returned heal is
// called.
func (r *robustRun) redisRepeat(t *testing.T, f func(ctx context.Context, rdb *redis.Client)) (heal func()) {
	t.Helper()
	rdb := r.redisClient(t)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			f(ctx, rdb)
			cancel()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { close(stop); <-done }
}
