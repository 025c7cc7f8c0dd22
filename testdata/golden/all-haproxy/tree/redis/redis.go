// Package redis is the distributed cache: a Redis tier shared by every
// instance (through github.com/go-redis/cache/v9 over
// github.com/redis/go-redis/v9) and a small local tier in each instance that
// is invalidated on every instance when any instance writes.
//
// Why not go-redis/cache's own local tier: it is never invalidated across
// instances (go-redis/cache#76), and its TinyLFU can keep the old value when
// a key is overwritten (go-redis/cache#105). The local tier here is
// cache.LRU, and go-redis/cache is used for the Redis tier only (it is
// created without a LocalCache).
//
// # The invalidation protocol (the cache "signal")
//
// Redis tier. Every key has a version key. Delete runs, in one MULTI:
// INCR version, DEL value, PUBLISH. A loader reads the version BEFORE it
// loads from the database, and stores what it loaded with a script that sets
// the value only if the version is still the one it read. So a value loaded
// before a write can't be stored after the write's DEL: either the loader
// read the old version (and the INCR makes its store fail, or its store came
// first and the DEL removes it), or it read the new version, which means it
// read the database after the write committed.
//
// Local tier. Every instance SUBSCRIBEs to <prefix>:invalidate and, for each
// message, drops the key from its local tier (cache.LRU.Invalidate, which
// also refuses stores of loads that were in flight) and then answers with an
// ack on the writer's ack channel. PUBLISH returns how many subscribers got
// the message; Delete waits for that many acks. An instance uses its local
// tier only while it holds a LEASE: a PING sent at time s on the subscribed
// connection whose PONG came back extends the lease to s+Lease. Redis answers
// in order, so when that PONG arrives every invalidation PUBLISHed before
// Redis read the PING has already been processed.
//
// Why a Get that starts after Delete returned can't see an older value:
//
//  1. Redis tier: Delete's DEL ran after the database write; see above.
//  2. Local tier, instance acked: it dropped the key (and bumped the
//     generation that in-flight loads check) before acking.
//  3. Local tier, instance did not ack in time: Delete waits until
//     Lease+margin after PUBLISH returned. An instance that did not process
//     the message holds no lease from a PING that Redis read after the
//     PUBLISH; any older lease has run out by then, so it reads past its
//     local tier (Redis tier or database). Only durations measured on each
//     machine are compared, so clocks need not agree, only run at about
//     the same rate (the margin is Lease/4).
//  4. Connection lost or re-established: the whole local tier is cleared
//     (and its epoch bumped, refusing in-flight stores); while not subscribed
//     there is no lease, so the local tier and single-flight sharing are
//     bypassed.
//  5. Single-flight: a load is shared only by Gets with the same stamp
//     (generation) of the key, so a Get that starts after the invalidation
//     never joins a load that started before it.
//
// Redis down: Get loads from the database (warn log, rate-limited); there
// are no leases, so no local tier either. Delete returns an error, after
// waiting until every lease that could still cover the key has run out
// (only in the first Lease+margin after this instance saw Redis go away;
// later it fails at once). It remembers the key and invalidates it again as
// soon as Redis answers, in case Redis comes back with the old value
// (persistence). Until then, or if this instance stops first, Redis entries
// live at most TTL (CACHE_TTL); a Redis restarted empty is harmless.
//
// Known limits: a subscriber connection that was closed (by Redis, or by a
// go-redis reconnect) is not counted by PUBLISH; until its instance has read
// the close, it may serve its local copy, at most until its lease ends
// (Lease). A partition between one instance and Redis, with the database
// still reachable, leaves the old value in Redis until the retry or TTL.
// Redis Cluster is not supported (PUBLISH counts one node's subscribers).
package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rediscache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"example.com/acme/shop/cache"
)

// Options configure a Cache. Zero values take the defaults.
type Options struct {
	URL       string        // redis://[user:pass@]host:port/db (REDIS_URL)
	Prefix    string        // prefix of keys and channels; default "cache"
	TTL       time.Duration // lifetime of Redis entries (CACHE_TTL); default 5m
	LocalSize int           // local tier entries (CACHE_LOCAL_SIZE); 0 disables it
	LocalTTL  time.Duration // backstop lifetime of local entries; default 5s, at most TTL
	Logger    *slog.Logger

	// PingInterval and Lease bound how long an instance that stopped
	// hearing from Redis keeps using its local tier, and so how long a
	// Delete waits for an instance that does not ack. Defaults 200ms and 1s.
	PingInterval time.Duration
	Lease        time.Duration
}

// Cache is the distributed cache.Cache. It is safe for concurrent use.
type Cache struct {
	opts   Options
	log    *slog.Logger
	rdb    *goredis.Client
	rc     *rediscache.Cache // Redis tier: Get, and the value codec
	local  *cache.LRU
	flight singleflight.Group

	token    string // names this Cache in invalidation messages
	channel  string // <prefix>:invalidate
	ackChan  string // <prefix>:ack:<token>
	base     time.Time
	lease    atomic.Int64 // local tier usable until base+lease (ns)
	lostAt   atomic.Int64 // when the subscription was lost (ns since base), or -1 while subscribed
	seq      atomic.Uint64
	ps       *goredis.PubSub
	closing  chan struct{}
	wg       sync.WaitGroup
	warnedAt atomic.Int64

	mu      sync.Mutex
	waiters map[string]*waiter  // Delete calls waiting for acks, by message id
	pending map[string]struct{} // keys whose invalidation failed, retried
}

// maxPending bounds the keys remembered while Redis is down.
const maxPending = 10000

var _ cache.Cache = (*Cache)(nil)

// New connects lazily: it does not fail when Redis is down, the cache
// serves from the database until Redis answers.
func New(opts Options) (*Cache, error) {
	ro, err := goredis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: REDIS_URL: %w", err)
	}
	// A down Redis must cost a request milliseconds, not the defaults'
	// seconds (5 s dial and read timeouts, 3 retries, 5 dial attempts).
	// Values given in the URL (?dial_timeout=...) are kept.
	if ro.DialTimeout == 0 {
		ro.DialTimeout = 300 * time.Millisecond
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = 300 * time.Millisecond
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = 300 * time.Millisecond
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = 500 * time.Millisecond
	}
	if ro.MaxRetries == 0 {
		ro.MaxRetries = 1 // one retry replaces a pooled connection that died with a restart
	}
	if ro.MinRetryBackoff == 0 {
		ro.MinRetryBackoff = time.Millisecond
	}
	if ro.MaxRetryBackoff == 0 {
		ro.MaxRetryBackoff = 5 * time.Millisecond
	}
	if ro.DialerRetries == 0 {
		ro.DialerRetries = 1
	}
	if opts.Prefix == "" {
		opts.Prefix = "cache"
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.LocalTTL <= 0 {
		opts.LocalTTL = 5 * time.Second
	}
	opts.LocalTTL = min(opts.LocalTTL, opts.TTL)
	if opts.PingInterval <= 0 {
		opts.PingInterval = 200 * time.Millisecond
	}
	if opts.Lease <= 0 {
		opts.Lease = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// go-redis logs every failed dial with the standard logger: while Redis
	// is down that is a plain-text line per request. Route it to the JSON
	// log at debug level; this package warns, rate-limited, instead. (The
	// logger is global to go-redis; this service has one Redis client.)
	goredis.SetLogger(debugLogger{opts.Logger})
	c := &Cache{
		opts:    opts,
		log:     opts.Logger.With("component", "cache"),
		rdb:     goredis.NewClient(ro),
		local:   cache.NewLRU(opts.LocalSize, opts.LocalTTL),
		token:   newToken(),
		base:    time.Now(),
		closing: make(chan struct{}),
		waiters: make(map[string]*waiter),
		pending: make(map[string]struct{}),
	}
	// No LocalCache: see the package doc. JSON rather than go-redis/cache's
	// msgpack: values read back exactly as an uncached load (msgpack decodes
	// a time.Time in the local zone), the same as cache.Memory, and readable
	// with redis-cli.
	c.rc = rediscache.New(&rediscache.Options{Redis: c.rdb, Marshal: json.Marshal, Unmarshal: unmarshal})
	c.channel = opts.Prefix + ":invalidate"
	c.ackChan = opts.Prefix + ":ack:" + c.token
	c.lostAt.Store(0)
	c.ps = c.rdb.Subscribe(context.Background(), c.channel, c.ackChan)
	c.wg.Add(2)
	go c.receive()
	go c.ping()
	return c, nil
}

// Keys: the value and its version share a hash tag, so the scripts that
// touch both stay valid on a Redis that shards by slot.
func (c *Cache) valueKey(key string) string   { return c.opts.Prefix + ":{" + key + "}" }
func (c *Cache) versionKey(key string) string { return c.opts.Prefix + ":{" + key + "}:v" }

func (c *Cache) sinceBase() int64 { return int64(time.Since(c.base)) }

// leased reports whether the local tier may be used now.
func (c *Cache) leased() bool { return c.sinceBase() < c.lease.Load() }

// Get implements cache.Cache.
func (c *Cache) Get(ctx context.Context, key string, v any, load func(context.Context) (any, error)) (cache.Source, error) {
	// The lease is checked before the stamp is taken and before the local
	// read: see the package doc, point 3.
	leased := c.leased()
	stamp := c.local.Stamp(key)
	if leased {
		if b, ok := c.local.Get(key); ok {
			if err := c.rc.Unmarshal(b, v); err == nil {
				return cache.SourceLocal, nil
			}
		}
	}
	var src cache.Source
	fetch := func(ctx context.Context) ([]byte, error) {
		b, s, err := c.fetch(ctx, key, load)
		if err != nil {
			return nil, err
		}
		src = s
		if leased {
			// Refused if the key was invalidated, or the subscription
			// lost, since the stamp was taken.
			c.local.SetIf(key, b, stamp)
		}
		return b, nil
	}
	var b []byte
	var err error
	if leased {
		b, err = cache.Flight(ctx, &c.flight, cache.FlightKey(key, stamp), fetch)
	} else {
		// Not subscribed: a missed invalidation would not bump the
		// stamp, so loads are not shared (point 5 needs the signal).
		b, err = fetch(ctx)
	}
	if err != nil {
		return cache.SourceMiss, err
	}
	if src == "" {
		src = cache.SourceMiss // joined another Get's load
	}
	if err := c.rc.Unmarshal(b, v); err != nil {
		return src, fmt.Errorf("cache: decode %q: %w", key, err)
	}
	return src, nil
}

// fetch reads the Redis tier, or loads and stores a value there. Redis
// errors are logged and answered from load.
func (c *Cache) fetch(ctx context.Context, key string, load func(context.Context) (any, error)) ([]byte, cache.Source, error) {
	var raw []byte
	err := c.rc.Get(ctx, c.valueKey(key), &raw) // *[]byte: the stored bytes, decoded later
	if err == nil && len(raw) > 0 {
		return raw, cache.SourceRedis, nil
	}
	redisUp := err == nil || errors.Is(err, rediscache.ErrCacheMiss)
	var version string
	if redisUp {
		// The version is read before the load: see the package doc.
		version, err = c.rdb.Get(ctx, c.versionKey(key)).Result()
		if errors.Is(err, goredis.Nil) {
			version, err = "", nil
		}
		redisUp = err == nil
	}
	if !redisUp {
		c.warn("redis unavailable, reading through to the source", err)
	}
	val, err := load(ctx)
	if err != nil {
		return nil, "", err
	}
	b, err := c.rc.Marshal(val)
	if err != nil {
		return nil, "", fmt.Errorf("cache: encode %q: %w", key, err)
	}
	if redisUp {
		err := setIfVersion.Run(ctx, c.rdb, []string{c.valueKey(key), c.versionKey(key)},
			version, b, c.opts.TTL.Milliseconds()).Err()
		if err != nil && !errors.Is(err, goredis.Nil) {
			c.warn("redis set failed", err)
		}
	}
	return b, cache.SourceMiss, nil
}

// setIfVersion stores a loaded value only if no Delete ran since the
// loader read the version.
var setIfVersion = goredis.NewScript(`
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// Delete implements cache.Cache; see the package doc for the protocol.
func (c *Cache) Delete(ctx context.Context, key string) error {
	c.local.Invalidate(key) // this instance at once, whatever Redis does
	err := c.invalidate(ctx, key, true)
	if err == nil {
		return nil
	}
	c.remember(key)
	c.waitOutLeases(ctx)
	c.warn("invalidation failed, retried when redis answers", err)
	return fmt.Errorf("cache: invalidate %q: %w", key, err)
}

// invalidate bumps the version, deletes the value, publishes the key and,
// when wait is set, waits until every instance dropped it from its local
// tier or its lease ran out.
func (c *Cache) invalidate(ctx context.Context, key string, wait bool) error {
	id := strconv.FormatUint(c.seq.Add(1), 10)
	w := &waiter{need: -1, done: make(chan struct{})}
	if wait {
		c.mu.Lock()
		c.waiters[id] = w
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.waiters, id)
			c.mu.Unlock()
		}()
	}
	var pub *goredis.IntCmd
	_, err := c.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Incr(ctx, c.versionKey(key))
		// The version must outlive any load that read it; see the package doc.
		p.PExpire(ctx, c.versionKey(key), c.opts.TTL+time.Minute)
		p.Del(ctx, c.valueKey(key))
		pub = p.Publish(ctx, c.channel, c.token+"|"+id+"|"+key)
		return nil
	})
	if err != nil || !wait {
		return err
	}
	published := time.Now()
	c.mu.Lock()
	w.need = int(pub.Val())
	w.check()
	c.mu.Unlock()

	timer := time.NewTimer(time.Until(published.Add(c.leaseWait())))
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		// Correct by the lease (point 3), but worth knowing about.
		c.mu.Lock()
		got, need := w.got, w.need
		c.mu.Unlock()
		c.log.Warn("cache: invalidation not acked by every instance, waited out their leases",
			"key", key, "acks", got, "subscribers", need)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// leaseWait is Lease plus a margin for clock-rate differences and scheduling.
func (c *Cache) leaseWait() time.Duration { return c.opts.Lease + c.opts.Lease/4 }

// waitOutLeases returns once no instance can hold a lease from before Redis
// went away: a lease comes from a PONG that Redis sent before it went away,
// which is before this instance saw it go (lostAt), or before now.
func (c *Cache) waitOutLeases(ctx context.Context) {
	from := c.sinceBase()
	if lost := c.lostAt.Load(); lost >= 0 {
		from = lost
	}
	d := time.Duration(from) + c.leaseWait() - time.Since(c.base)
	if d <= 0 {
		return
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// remember keeps a key whose invalidation failed, for retryPending.
func (c *Cache) remember(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) >= maxPending {
		c.log.Error("cache: too many failed invalidations to remember; Redis entries may be stale until CACHE_TTL",
			"key", key)
		return
	}
	c.pending[key] = struct{}{}
}

func (c *Cache) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// retryPending invalidates again the keys whose invalidation failed.
func (c *Cache) retryPending(ctx context.Context) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	for _, k := range keys {
		if err := c.invalidate(ctx, k, false); err != nil {
			return
		}
		c.mu.Lock()
		delete(c.pending, k)
		c.mu.Unlock()
	}
	if len(keys) > 0 {
		c.log.Info("cache: invalidations retried", "keys", len(keys))
	}
}

// Check implements cache.Cache: Redis answers and this instance is
// subscribed to the invalidations.
func (c *Cache) Check(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if !c.leased() {
		return errors.New("redis: invalidation subscription not established")
	}
	return nil
}

// Close implements cache.Cache.
func (c *Cache) Close() error {
	close(c.closing)
	err := c.ps.Close()
	c.wg.Wait()
	return errors.Join(err, c.rdb.Close())
}

// receive is the subscriber loop: it applies invalidations, counts acks,
// and holds the lease. go-redis reconnects and resubscribes by itself; any
// error here means messages may have been missed.
func (c *Cache) receive() {
	defer c.wg.Done()
	ctx := context.Background()
	backoff := 50 * time.Millisecond
	for {
		msg, err := c.ps.Receive(ctx)
		select {
		case <-c.closing:
			return
		default:
		}
		if err != nil {
			c.lost(err)
			select {
			case <-c.closing:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Channel == c.channel {
				c.subscribed(ctx)
			}
		case *goredis.Pong:
			c.renew(m.Payload)
		case *goredis.Message:
			switch m.Channel {
			case c.channel:
				c.onInvalidate(ctx, m.Payload)
			case c.ackChan:
				c.onAck(m.Payload)
			}
		}
	}
}

// lost ends the lease and clears the local tier: invalidations may be
// missed from now until the next subscription.
func (c *Cache) lost(err error) {
	c.lease.Store(0)
	if c.lostAt.CompareAndSwap(-1, c.sinceBase()) {
		c.log.Warn("cache: invalidation subscription lost; local tier cleared and bypassed", "error", err)
	}
	c.local.Clear()
}

// subscribed starts a new subscription: the local tier is cleared again
// (nothing loaded before this point may be stored) and a PING asks for the
// first lease.
func (c *Cache) subscribed(ctx context.Context) {
	c.lease.Store(0) // only PONGs on this connection count from now on
	c.local.Clear()
	if c.lostAt.Swap(-1) > 0 {
		c.log.Info("cache: invalidation subscription restored")
	}
	c.sendPing(ctx)
}

// renew extends the lease from a PONG whose payload is the PING's send time.
func (c *Cache) renew(payload string) {
	sent, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || c.lostAt.Load() >= 0 {
		return
	}
	if until := sent + int64(c.opts.Lease); until > c.lease.Load() {
		c.lease.Store(until)
	}
}

func (c *Cache) onInvalidate(ctx context.Context, payload string) {
	origin, rest, ok1 := strings.Cut(payload, "|")
	id, key, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 {
		return
	}
	c.local.Invalidate(key)
	// The ack goes out only after the key is gone from this local tier.
	if origin == c.token {
		c.onAck(id)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_ = c.rdb.Publish(ctx, c.opts.Prefix+":ack:"+origin, id).Err()
	}()
}

func (c *Cache) onAck(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.waiters[id]; ok {
		w.got++
		w.check()
	}
}

// ping sends a PING on the subscribed connection every PingInterval.
func (c *Cache) ping() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
			c.sendPing(ctx)
			if c.lostAt.Load() < 0 && c.hasPending() {
				c.retryPending(ctx)
			}
		}
	}
}

// sendPing's payload is the send time: the lease counts from when the PING
// left, which is before Redis read it.
func (c *Cache) sendPing(ctx context.Context) {
	_ = c.ps.Ping(ctx, strconv.FormatInt(c.sinceBase(), 10))
}

// warn logs Redis trouble at most every 10 seconds.
func (c *Cache) warn(msg string, err error) {
	now := c.sinceBase()
	last := c.warnedAt.Load()
	if last != 0 && now-last < int64(10*time.Second) {
		return
	}
	if c.warnedAt.CompareAndSwap(last, now) {
		c.log.Warn("cache: "+msg, "error", err)
	}
}

// waiter counts the acks of one invalidation.
type waiter struct {
	need   int // subscribers that got the message; -1 until PUBLISH returned
	got    int // acks so far (some may come before PUBLISH returns)
	done   chan struct{}
	closed bool
}

// check closes done once every subscriber acked. Called with c.mu held.
func (w *waiter) check() {
	if !w.closed && w.need >= 0 && w.got >= w.need {
		w.closed = true
		close(w.done)
	}
}

// unmarshal decodes JSON, except into *[]byte, which gets the stored bytes
// as they are (fetch keeps them for the local tier).
func unmarshal(b []byte, v any) error {
	if p, ok := v.(*[]byte); ok {
		*p = bytes.Clone(b)
		return nil
	}
	return json.Unmarshal(b, v)
}

// debugLogger adapts slog to go-redis's logger.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
