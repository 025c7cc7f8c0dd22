package redis

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"example.com/acme/shop/cache"
	"example.com/acme/shop/testsupport"
)

func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }

// db is the source of truth of the tests: one versioned value per key.
type db struct {
	mu sync.Mutex
	m  map[string]int
}

type value struct {
	Key     string
	Version int
}

func (d *db) set(key string, v int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]int{}
	}
	d.m[key] = v
}

func (d *db) loader(key string) func(context.Context) (any, error) {
	return func(context.Context) (any, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return value{key, d.m[key]}, nil
	}
}

// newCache is one instance's cache, as a separate process would have it:
// its own go-redis client and subscription.
func newCache(t *testing.T, url string) *Cache { return newCacheSize(t, url, 100) }

func newCacheSize(t *testing.T, url string, localSize int) *Cache {
	t.Helper()
	c, err := New(Options{
		URL: url, Prefix: "test", LocalSize: localSize,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitLeased waits until the caches are subscribed and hold a lease.
func waitLeased(t *testing.T, cs ...*Cache) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range cs {
		for !c.leased() {
			if time.Now().After(deadline) {
				t.Fatal("cache did not subscribe within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func get(t *testing.T, c *Cache, d *db, key string) (value, cache.Source) {
	t.Helper()
	var v value
	src, err := c.Get(context.Background(), key, &v, d.loader(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v, src
}

func TestSources(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	d := &db{}
	d.set("k", 1)
	for i, step := range []struct {
		c    *Cache
		want cache.Source
	}{
		{a, cache.SourceMiss},
		{b, cache.SourceRedis},
		{b, cache.SourceLocal},
		{a, cache.SourceLocal},
	} {
		v, src := get(t, step.c, d, "k")
		if src != step.want || v.Version != 1 {
			t.Fatalf("step %d: Get = %v %+v, want %v version 1", i, src, v, step.want)
		}
	}
}

func TestDeleteInvalidatesOtherInstance(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	d := &db{}
	d.set("k", 1)
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("B's second Get = %v, want local", src)
	}
	d.set("k", 2)
	start := time.Now()
	if err := a.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Delete took %v", time.Since(start))
	if _, ok := b.local.Get("k"); ok {
		t.Fatal("B's local tier still holds the key after A's Delete returned")
	}
	if v, src := get(t, b, d, "k"); v.Version != 2 || src != cache.SourceMiss {
		t.Fatalf("B's Get after Delete = %v %+v, want miss version 2", src, v)
	}
}

// TestTwoInstanceStale: writes go through A (database, then Delete, as the
// handlers do); readers go through B. A read that starts after a Delete
// returned must never see a version older than that write. A third
// instance without a local tier reads too, so that the Redis tier is
// exercised as much as B's local tier.
func TestTwoInstanceStale(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b, c := newCache(t, srv.URL), newCache(t, srv.URL), newCacheSize(t, srv.URL, 0)
	waitLeased(t, a, b, c)

	const key = "note:1"
	d := &db{}
	d.set(key, 0)
	var deleted atomic.Int64 // the last version whose Delete returned
	// Loads take a little time, so that loads and invalidations overlap.
	load := func(ctx context.Context) (any, error) {
		v, _ := d.loader(key)(ctx)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		return v, nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var reads, stale atomic.Int64
	var sources sync.Map // cache.Source -> *atomic.Int64
	var wg sync.WaitGroup
	for i := range 6 {
		reader := b
		if i >= 4 {
			reader = c
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				// Readers pause a little, as requests would: spinning
				// readers would starve the writer and the subscriber on a
				// small machine.
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				before := deleted.Load()
				var v value
				src, err := reader.Get(ctx, key, &v, load)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Get: %v", err)
					}
					return
				}
				reads.Add(1)
				n, _ := sources.LoadOrStore(src, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				if int64(v.Version) < before {
					if stale.Add(1) <= 5 {
						t.Errorf("stale read: got version %d from %s, a Delete of version %d had returned before the read started", v.Version, src, before)
					}
				}
			}
		})
	}
	writes := 0
	var took []time.Duration
	for i := 1; i <= 2000 && ctx.Err() == nil; i++ {
		d.set(key, i)
		start := time.Now()
		if err := a.Delete(ctx, key); err != nil {
			if ctx.Err() == nil {
				t.Fatalf("Delete: %v", err)
			}
			break
		}
		took = append(took, time.Since(start))
		deleted.Store(int64(i))
		writes++
		// Let readers fill the local tier between some writes.
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
	}
	cancel()
	wg.Wait()
	counts := map[cache.Source]int64{}
	sources.Range(func(k, v any) bool { counts[k.(cache.Source)] = v.(*atomic.Int64).Load(); return true })
	slices.Sort(took)
	t.Logf("writes=%d reads=%d stale=%d sources=%v Delete p50=%v p99=%v max=%v", writes, reads.Load(), stale.Load(), counts,
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
	if stale.Load() != 0 {
		t.Fatalf("%d stale reads", stale.Load())
	}
	if counts[cache.SourceLocal] == 0 || counts[cache.SourceRedis] == 0 {
		t.Fatalf("the test did not exercise both tiers: %v", counts)
	}
}

// A subscriber that never acks (a stuck instance) costs a Delete the lease,
// not correctness.
func TestDeleteWaitsOutSilentSubscriber(t *testing.T) {
	srv := testsupport.Redis(t)
	a := newCache(t, srv.URL)
	waitLeased(t, a)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ps := raw.Subscribe(context.Background(), "test:invalidate")
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("Delete with a silent subscriber took %v (lease %v)", took, a.opts.Lease)
	if took < a.opts.Lease || took > 3*a.opts.Lease {
		t.Fatalf("Delete took %v, want about %v", took, a.leaseWait())
	}
}

func TestRedisDownAndBack(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	ctx := context.Background()
	d := &db{}
	d.set("k", 1)
	get(t, b, d, "k")

	srv.Stop(t)
	// Gets answer from the database, fast, and never from a local tier
	// that can no longer be invalidated.
	var lat []time.Duration
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		d.set("k", 100+i)
		start := time.Now()
		v, src := get(t, b, d, "k")
		lat = append(lat, time.Since(start))
		if i > 0 && (v.Version != 100+i || src != cache.SourceMiss) {
			// i == 0 may still be served locally: B has not yet seen Redis go.
			t.Fatalf("Get %d with Redis down = %v %+v, want miss version %d", i, src, v, 100+i)
		}
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(lat)
	t.Logf("Get with Redis down: %d gets, p50=%v p99=%v max=%v", len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	// The bound is loose (test machines are loaded); what it rules out is
	// go-redis's default timeouts and retries, seconds per request.
	if lat[len(lat)*99/100] > time.Second {
		t.Errorf("Get with Redis down is slow: p99 %v", lat[len(lat)*99/100])
	}
	if err := b.Check(ctx); err == nil {
		t.Error("Check succeeded with Redis down")
	}
	start := time.Now()
	err := a.Delete(ctx, "k")
	t.Logf("Delete with Redis down (outage older than the lease): %v, err=%v", time.Since(start), err)
	if err == nil {
		t.Error("Delete succeeded with Redis down")
	}
	// Well under the lease wait (1.25s) that a fresh outage costs.
	if time.Since(start) > 600*time.Millisecond {
		t.Errorf("Delete with Redis down took %v", time.Since(start))
	}

	srv.Start(t)
	// The same clients recover: the subscription comes back and both
	// tiers serve again.
	start = time.Now()
	waitLeased(t, a, b)
	t.Logf("lease back %v after Redis started", time.Since(start))
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check after restart: %v", err)
	}
	d.set("k", 7)
	want := []cache.Source{cache.SourceMiss, cache.SourceRedis, cache.SourceLocal}
	for i, c := range []*Cache{a, b, b} {
		if v, src := get(t, c, d, "k"); src != want[i] || v.Version != 7 {
			t.Fatalf("Get %d after restart = %v %+v, want %v version 7", i, src, v, want[i])
		}
	}
}

// The first writes of an outage wait until every lease has run out, so no
// instance serves its local copy after Delete returned, though Redis could
// not carry the invalidation.
func TestDeleteAtOutageStart(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	d := &db{}
	d.set("k", 1)
	get(t, b, d, "k")
	get(t, b, d, "k")
	srv.Kill(t)
	d.set("k", 2)
	start := time.Now()
	err := a.Delete(context.Background(), "k")
	t.Logf("Delete at the start of an outage: %v, err=%v", time.Since(start), err)
	if v, src := get(t, b, d, "k"); v.Version != 2 {
		t.Fatalf("B served %v %+v after A's Delete returned", src, v)
	}
}

// Losing the subscription clears the local tier: an invalidation sent while
// an instance was not subscribed is never missed.
func TestSubscriptionDropClearsLocal(t *testing.T) {
	srv := testsupport.Redis(t)
	b := newCache(t, srv.URL)
	waitLeased(t, b)
	d := &db{}
	d.set("k", 1)
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("second Get = %v, want local", src)
	}
	srv.Kill(t)
	srv.Start(t)
	// The write happened while B was disconnected: B never gets its
	// invalidation.
	d.set("k", 2)
	waitLeased(t, b)
	if v, src := get(t, b, d, "k"); v.Version != 2 {
		t.Fatalf("after reconnecting B served %v %+v, want version 2", src, v)
	}
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("local tier not used again after reconnecting: %v", src)
	}
}

func TestLoadErrorPassesThrough(t *testing.T) {
	srv := testsupport.Redis(t)
	c := newCache(t, srv.URL)
	errGone := errors.New("gone")
	var v value
	_, err := c.Get(context.Background(), "k", &v, func(context.Context) (any, error) { return nil, errGone })
	if !errors.Is(err, errGone) {
		t.Fatalf("err = %v, want the load's error", err)
	}
}

func TestBadURL(t *testing.T) {
	if _, err := New(Options{URL: "http://x"}); err == nil {
		t.Fatal("New accepted a non-redis URL")
	}
}

// A key whose invalidation failed in an outage is invalidated again once
// Redis answers, in case Redis came back with the old value (persistence).
func TestFailedInvalidationIsRetried(t *testing.T) {
	srv := testsupport.Redis(t)
	a := newCache(t, srv.URL)
	waitLeased(t, a)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ctx := context.Background()
	// The state after an outage: the old value is in Redis, and A remembers
	// that its invalidation failed.
	if err := raw.Set(ctx, a.valueKey("k"), `{"Key":"k","Version":1}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	a.remember("k")
	deadline := time.Now().Add(3 * time.Second)
	for raw.Exists(ctx, a.valueKey("k")).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the remembered key was not invalidated within 3s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.hasPending() {
		t.Fatal("key still pending after its invalidation")
	}
}
