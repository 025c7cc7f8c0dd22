package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

// write is an update of key to version v through c, as the note store does
// it: Invalidate inside the transaction, then COMMIT (the change becomes
// visible), then done.
func write(ctx context.Context, c *Cache, d *db, key string, v int) error {
	done, err := c.Invalidate(ctx, key)
	if err != nil {
		return err
	}
	d.set(key, v)
	done(true)
	return nil
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
	if err := write(context.Background(), a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
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

func TestInvalidateOtherInstance(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	d := &db{}
	if err := write(context.Background(), a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("B's second Get = %v, want local", src)
	}
	start := time.Now()
	if err := write(context.Background(), a, d, "k", 2); err != nil {
		t.Fatal(err)
	}
	t.Logf("write took %v", time.Since(start))
	if _, ok := b.local.Get("k"); ok {
		t.Fatal("B's local tier still holds the key after A's write returned")
	}
	if v, src := get(t, b, d, "k"); v.Version != 2 || src != cache.SourceMiss {
		t.Fatalf("B's Get after the write = %v %+v, want miss version 2", src, v)
	}
	if v, src := get(t, b, d, "k"); v.Version != 2 || src != cache.SourceLocal {
		t.Fatalf("B's second Get after the write = %v %+v, want local version 2: caching resumes after done", src, v)
	}
}

// TestTwoInstanceStale: writes go through A (as the note store does them);
// readers go through B. A read that starts after a write
// returned must never see a version older than that write. A third
// instance without a local tier reads too, so that the Redis tier is
// exercised as much as B's local tier.
func TestTwoInstanceStale(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b, c := newCache(t, srv.URL), newCache(t, srv.URL), newCacheSize(t, srv.URL, 0)
	waitLeased(t, a, b, c)

	const key = "note:1"
	d := &db{}
	if err := write(context.Background(), a, d, key, 0); err != nil {
		t.Fatal(err)
	}
	var deleted atomic.Int64 // the last version whose write returned
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
						t.Errorf("stale read: got version %d from %s, a write of version %d had returned before the read started", v.Version, src, before)
					}
				}
			}
		})
	}
	writes := 0
	var took []time.Duration
	for i := 1; i <= 2000 && ctx.Err() == nil; i++ {
		start := time.Now()
		if err := write(ctx, a, d, key, i); err != nil {
			if ctx.Err() == nil {
				t.Fatalf("write: %v", err)
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
	t.Logf("writes=%d reads=%d stale=%d sources=%v write p50=%v p99=%v max=%v", writes, reads.Load(), stale.Load(), counts,
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
	if stale.Load() != 0 {
		t.Fatalf("%d stale reads", stale.Load())
	}
	if counts[cache.SourceLocal] == 0 || counts[cache.SourceRedis] == 0 {
		t.Fatalf("the test did not exercise both tiers: %v", counts)
	}
}

// viaFaultProxy returns a fault proxy to the Redis at redisURL and the URL
// that goes through it.
func viaFaultProxy(t *testing.T, redisURL string) (*testsupport.FaultProxy, string) {
	t.Helper()
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testsupport.NewFaultProxy(t, u.Host)
	u.Host = p.Addr
	return p, u.String()
}

// A member that neither acks nor renews (a paused instance) delays writes
// only until its membership runs out, one Lease; after that writes are
// fast again. (Before: every write waited a full lease for as long as the
// pause lasted, because the paused subscriber was counted by PUBLISH.)
func TestPausedMemberDelaysWritesOneLeaseAtMost(t *testing.T) {
	srv := testsupport.Redis(t)
	a := newCache(t, srv.URL)
	waitLeased(t, a)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ctx := context.Background()
	// The paused instance: subscribed (PUBLISH counts it), a member that
	// renewed just now, and then nothing.
	ps := raw.Subscribe(ctx, "test:invalidate")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := renew.Run(ctx, raw, []string{a.members}, "paused", a.opts.Lease.Milliseconds()).Err(); err != nil {
		t.Fatal(err)
	}
	d := &db{}
	start := time.Now()
	if err := write(ctx, a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	var later []time.Duration
	for i := range 20 {
		start := time.Now()
		if err := write(ctx, a, d, "k", i+2); err != nil {
			t.Fatal(err)
		}
		later = append(later, time.Since(start))
	}
	slices.Sort(later)
	t.Logf("first write %v (lease %v); the next 20: p50 %v max %v", first, a.opts.Lease, later[10], later[19])
	if first > a.opts.Lease+a.opts.Lease/2 {
		t.Errorf("first write took %v, want at most about the lease %v", first, a.opts.Lease)
	}
	if later[19] > 100*time.Millisecond {
		t.Errorf("writes after the paused member's lease ran out took up to %v, want well under 100ms", later[19])
	}
}

// A writer waits for each member only until that member acks or its own
// membership ends: here one member never acks and its membership ends in
// 200ms, while another acks at once but renews to a full Lease. The write
// ends with the silent member's membership. (Before, it waited for the
// latest membership end among the members not acked when the script
// replied, the live one's here: a whole Lease.)
func TestWaitEndsWithEachMembership(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ctx := context.Background()
	const silent = 200 * time.Millisecond
	d := &db{}
	var took []time.Duration
	for range 5 {
		if err := renew.Run(ctx, raw, []string{a.members}, "silent", silent.Milliseconds()).Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := write(ctx, a, d, "k", 1); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
		time.Sleep(silent) // the silent membership is over before the next round
	}
	t.Logf("writes with a silent member of %v and a live one of %v: %v", silent, a.opts.Lease, took)
	// The median: a loaded machine delays one write now and then (568ms
	// once, at load 13); the bug delays every write by the live lease.
	slices.Sort(took)
	if d := took[len(took)/2]; d > silent+a.opts.Lease/16+150*time.Millisecond {
		t.Errorf("the median write took %v, want about the silent member's %v (+%v margin), not the live member's lease", d, silent, a.opts.Lease/16)
	}
}

// Redis frozen (SIGSTOP) for longer than the subscriptions' deadline, under
// steady writes from two instances: no write takes more than a second,
// whether it fails (503 in the app) or succeeds, also across the SIGCONT;
// and writes succeed again within a second of it. This guards the bound; the
// cluster benchmark's "redis frozen" row is where the old code showed
// writes of up to 1.4 s across the SIGCONT.
func TestFrozenRedisBoundsWrites(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	for i, c := range []*Cache{a, b, a, b} {
		wg.Go(func() {
			d := &db{}
			key := fmt.Sprintf("k%d", i)
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				err := write(context.Background(), c, d, key, n)
				mu.Lock()
				results = append(results, result{start, time.Now(), err})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	srv.Signal(t, syscall.SIGSTOP)
	frozen := time.Now()
	time.Sleep(2 * time.Second) // beyond 2 x Lease: every subscription is taken for dead
	srv.Signal(t, syscall.SIGCONT)
	resumed := time.Now()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	var slowest time.Duration
	failed, firstOK := 0, time.Duration(-1)
	for _, r := range results {
		took := r.end.Sub(r.start)
		slowest = max(slowest, took)
		if r.err != nil {
			failed++
		}
		if r.err == nil && r.start.After(resumed) && (firstOK < 0 || r.end.Sub(resumed) < firstOK) {
			firstOK = r.end.Sub(resumed)
		}
		if took > maxAckWait+endWait+50*time.Millisecond {
			t.Errorf("a write sent %v after the freeze took %v (err %v), want at most %v", r.start.Sub(frozen).Round(time.Millisecond), took, r.err, maxAckWait+endWait)
		}
	}
	t.Logf("%d writes, %d failed; slowest %v; first success %v after the SIGCONT", len(results), failed, slowest, firstOK)
	if failed == 0 {
		t.Error("no write failed while Redis was frozen")
	}
	// Commands the instances sent while Redis was frozen run when it
	// resumes, membership renewals among them: the first writes after the
	// SIGCONT may wait out one membership (a Lease) before they succeed.
	if firstOK < 0 || firstOK > maxAckWait+endWait {
		t.Errorf("first successful write %v after the SIGCONT, want within %v", firstOK, maxAckWait+endWait)
	}
}

// An instance whose subscription Redis dropped, while the instance has not
// noticed (half-open), still holds its lease and its local copy. A write
// must wait for it (its membership), not return at once because PUBLISH
// did not count it.
func TestHalfOpenSubscriberIsWaitedFor(t *testing.T) {
	srv := testsupport.Redis(t)
	p, viaProxy := viaFaultProxy(t, srv.URL)
	a, b := newCache(t, srv.URL), newCache(t, viaProxy)
	waitLeased(t, a, b)
	d := &db{}
	if err := write(context.Background(), a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("B's second Get = %v, want local", src)
	}
	p.Abandon()
	if err := write(context.Background(), a, d, "k", 2); err != nil {
		t.Fatal(err)
	}
	if v, src := get(t, b, d, "k"); v.Version != 2 {
		t.Fatalf("B served %v version %d after A's write returned", src, v.Version)
	}
}

// A subscription that went silent (half-open) is noticed and replaced: the
// instance gets its lease and local tier back without a restart.
func TestDeadSubscriptionIsReplaced(t *testing.T) {
	srv := testsupport.Redis(t)
	p, viaProxy := viaFaultProxy(t, srv.URL)
	b := newCache(t, viaProxy)
	waitLeased(t, b)
	p.Abandon()
	deadline := time.Now().Add(time.Second)
	for b.leased() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.leased() {
		t.Fatal("lease still held 1s after the subscription went silent")
	}
	start := time.Now()
	deadline = time.Now().Add(10 * time.Second)
	for !b.leased() {
		if time.Now().After(deadline) {
			t.Fatal("no new subscription within 10s of the old one going silent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("subscription replaced after %v", time.Since(start))
	if err := b.Check(context.Background()); err != nil {
		t.Fatalf("Check after recovery: %v", err)
	}
}

// An instance cut off from Redis fails a write fast, before its commit.
func TestWriteFailsFastWithoutRedis(t *testing.T) {
	srv := testsupport.Redis(t)
	p, viaProxy := viaFaultProxy(t, srv.URL)
	a := newCache(t, viaProxy)
	waitLeased(t, a)
	d := &db{}
	d.set("k", 1)
	p.Set(testsupport.Blackhole)
	for _, name := range []string{"partitioned", "down"} {
		if name == "down" {
			p.Reset()
			p.Heal()
			srv.Kill(t)
		}
		start := time.Now()
		err := write(context.Background(), a, d, "k", 2)
		took := time.Since(start)
		t.Logf("%s: write failed in %v: %v", name, took, err)
		if err == nil {
			t.Fatalf("%s: write succeeded without Redis", name)
		}
		if took > time.Second {
			t.Errorf("%s: the write took %v to fail, want under 1s", name, took)
		}
		if v, _ := get(t, a, d, "k"); v.Version != 1 {
			t.Fatalf("%s: read %d, want 1 (from the database)", name, v.Version)
		}
	}
}

// A load that read the database before a write must not be stored after
// it, even when Redis lost everything in between (a restart without
// persistence, FLUSHALL, eviction). Before, the version was a counter that
// started again at 1, so the old load matched the write's version.
func TestNoStaleStoreAcrossFlush(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCacheSize(t, srv.URL, 0)
	waitLeased(t, a, b)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ctx := context.Background()
	d := &db{}
	if err := write(ctx, a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	loaded, release := make(chan struct{}), make(chan struct{})
	got := make(chan value, 1)
	go func() {
		var v value
		_, err := b.Get(ctx, "k", &v, func(ctx context.Context) (any, error) {
			old, _ := d.loader("k")(ctx)
			close(loaded)
			<-release // paused with the old value in hand
			return old, nil
		})
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	<-loaded
	if err := raw.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := write(ctx, a, d, "k", 2); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-got
	for _, c := range []*Cache{a, b} {
		if v, src := get(t, c, d, "k"); v.Version != 2 {
			t.Fatalf("Get = %v version %d after the write of 2: the paused load was stored", src, v.Version)
		}
	}
}

// While a write is under way (between Invalidate and done) nothing is
// stored for the key: a value read then may be the old one.
func TestNothingStoredDuringWrite(t *testing.T) {
	srv := testsupport.Redis(t)
	a, b := newCache(t, srv.URL), newCache(t, srv.URL)
	waitLeased(t, a, b)
	ctx := context.Background()
	d := &db{}
	if err := write(ctx, a, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("second Get = %v, want local", src)
	}
	done, err := a.Invalidate(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cache{a, b, a, b} {
		if _, src := get(t, c, d, "k"); src != cache.SourceMiss {
			t.Fatalf("Get during the write = %v, want miss", src)
		}
	}
	d.set("k", 2)
	done(true)
	if v, src := get(t, b, d, "k"); v.Version != 2 || src != cache.SourceMiss {
		t.Fatalf("Get after done = %v %+v, want miss version 2", src, v)
	}
	if v, src := get(t, a, d, "k"); v.Version != 2 || src != cache.SourceRedis {
		t.Fatalf("second Get after done = %v %+v, want redis version 2", src, v)
	}
}

// A cached value that no longer decodes (a rolling deploy changed its
// type) is reloaded and replaced, not answered with an error until TTL.
func TestUndecodableValueIsReloaded(t *testing.T) {
	srv := testsupport.Redis(t)
	a := newCache(t, srv.URL)
	waitLeased(t, a)
	opt, _ := goredis.ParseURL(srv.URL)
	raw := goredis.NewClient(opt)
	defer raw.Close()
	ctx := context.Background()
	if err := raw.Set(ctx, a.valueKey("k"), `{"Key":"k","Version":"one"}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	d := &db{}
	d.set("k", 1)
	if v, _ := get(t, a, d, "k"); v.Version != 1 {
		t.Fatalf("Get = %+v, want version 1", v)
	}
}

// Two services on one Redis database, with different prefixes, share
// nothing.
func TestPrefixesDoNotShare(t *testing.T) {
	srv := testsupport.Redis(t)
	a := newCache(t, srv.URL)
	other, err := New(Options{URL: srv.URL, Prefix: "other", LocalSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	waitLeased(t, a, other)
	d1, d2 := &db{}, &db{}
	d1.set("k", 1)
	d2.set("k", 2)
	get(t, a, d1, "k")
	if v, _ := get(t, other, d2, "k"); v.Version != 2 {
		t.Fatalf("the other service read %+v, the first one's value", v)
	}
}

func TestSubscriptionDropClearsLocal(t *testing.T) {
	srv := testsupport.Redis(t)
	// A short write window, so that the test need not wait 5s for the key
	// to be cached again after Redis restarted empty.
	b, err := New(Options{URL: srv.URL, Prefix: "test", LocalSize: 10, WriteWindow: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitLeased(t, b)
	d := &db{}
	if err := write(context.Background(), b, d, "k", 1); err != nil {
		t.Fatal(err)
	}
	get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("second Get = %v, want local", src)
	}
	srv.Kill(t)
	// B notices while Redis is down. (Waiting for that after the restart
	// would race with B's resubscription, which ends the lost state.)
	for deadline := time.Now().Add(5 * time.Second); b.lostAt.Load() < 0; {
		if time.Now().After(deadline) {
			t.Fatal("B did not notice that Redis went away")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The write happens while B is disconnected: B never gets its
	// invalidation.
	d.set("k", 2)
	srv.Start(t)
	waitLeased(t, b)
	if v, src := get(t, b, d, "k"); v.Version != 2 {
		t.Fatalf("after reconnecting B served %v %+v, want version 2", src, v)
	}
	// Redis restarted empty, so it cannot know whether a write was under
	// way: nothing is cached for the key during one write window.
	if _, src := get(t, b, d, "k"); src != cache.SourceMiss {
		t.Fatalf("second Get right after Redis restarted empty = %v, want miss", src)
	}
	time.Sleep(400 * time.Millisecond)
	_, src1 := get(t, b, d, "k")
	if _, src := get(t, b, d, "k"); src != cache.SourceLocal {
		t.Fatalf("local tier not used again after reconnecting: %v then %v (leased %v)", src1, src, b.leased())
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
