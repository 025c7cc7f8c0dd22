// Package redis is the distributed cache: a Redis tier shared by every
// instance (through github.com/go-redis/cache/v9 over
// github.com/redis/go-redis/v9) and a small local tier in each instance that
// is invalidated on every instance when any instance writes.
//
// Why not go-redis/cache's own local tier: it is never invalidated across
// instances (go-redis/cache#76), and its TinyLFU can keep the old value when
// a key is overwritten (go-redis/cache#105). The local tier here is
// cache.LRU, and go-redis/cache is used for the Redis tier only.
//
// # The promise
//
// A Get that starts after a write's response never returns a value older
// than that write, on any instance, whatever fails: an instance or Redis
// paused (SIGSTOP, GC, a frozen VM), a connection that is half-open, one
// instance cut off from Redis, Redis restarted empty or losing keys. The
// price: a write that cannot tell the other instances fails (503) before it
// commits, so while Redis is unreachable from an instance, that instance's
// writes of cached data fail and its reads go to the database.
//
// # How: invalidate before commit, and a fence on the commit
//
// Every write calls Invalidate inside its database transaction, before
// COMMIT (and before the UPDATE, so that it does not hold the row's lock
// while it waits). Invalidate runs one script in Redis that
//
//   - deletes the value,
//   - gives the key a new random nonce and registers the write in the key's
//     meta hash as "writer until now+WriteWindow" (Redis's clock),
//   - lists the live members (instances that may hold a local tier, below),
//   - and PUBLISHes the key,
//
// then waits until every live member acked (it dropped the key from its
// local tier) or its membership ran out. Only then does the transaction
// commit; if anything fails, the transaction rolls back and the client
// gets 503: nothing is written that the cache could hide.
//
// Storing in the Redis tier. A Get that misses asks the key's meta (a
// script): if a writer is registered and not expired, or the meta is
// missing, the value is not stored (and a missing meta is created with a
// writer "new" of WriteWindow: after Redis restarts empty or loses the key,
// nothing is stored until every write that was under way has committed).
// Otherwise the script returns the nonce; the Get loads from the database
// and stores only if the nonce is still the same (a script). Any write that
// started meanwhile changed the nonce, so a value read from the database
// before a write commits is never stored after it; nonces are random, so
// unlike a counter they cannot repeat after a restart or an eviction. done
// removes the writer, so the key is cached again at once.
//
// The fence. A writer is registered for WriteWindow (8 s). The transaction
// must commit before that, or not at all, even if this process pauses right
// after Invalidate: PostgreSQL itself ends a transaction that stays idle
// longer than idle_in_transaction_session_timeout (postgres.NoteStore sets
// 2 s for writes), and the UPDATE waits at most lock_timeout (1 s) for its
// row. The UPDATE arrives within 2 s, ends within 1 s more, and the COMMIT
// arrives within 2 s after that, which leaves 3 s for the COMMIT itself to
// become visible.
//
// Local tier. An instance uses its local tier only while it holds a LEASE,
// and is a member (a sorted set in Redis, score = expiry by Redis's clock)
// for at least as long: every PingInterval it first renews its membership
// to Redis-now+Lease, and only after that sends a PING on its subscribed
// connection, with its own send time s; the PONG extends the lease to
// s+Lease. Redis answers in order on that connection, so when the PONG
// arrives every invalidation PUBLISHed before Redis read the PING has been
// processed; and the membership renewed before the PING covers the lease.
// A writer therefore waits for the acks of the members that are live when it
// PUBLISHes; one that does not ack (paused, its subscription half-open) is
// waited for only until its membership runs out, after which its lease has
// run out too and it reads past its local tier. A paused instance stops
// renewing, so after one Lease the writers stop waiting for it. Only
// durations measured on each machine are compared, so clocks need not
// agree, only run at about the same rate (the margin is Lease/16).
//
// A Get decides to use the local tier before it reads it; if the process
// pauses in between, the value it returns was current when the Get
// started, which is all a read may promise.
//
// Connection lost or silent: a subscription that delivers nothing (not
// even the PONGs, sent every PingInterval) for 2 x Lease is closed and
// re-established; while not subscribed there is no lease, the local tier is
// cleared and bypassed, and single-flight sharing is off. An instance renews
// its membership only while subscribed, and after its lease ran out (a
// pause) only once it starts over: writers do not wait for an instance
// that cannot hear them. A writer waits for each member until that member
// acks or its membership ends, and for the whole invalidation at most
// maxAckWait: then it rolls back.
//
// Known limits: the fence assumes that an UPDATE of one row, once it has
// the row's lock, ends at once, and that PostgreSQL makes a COMMIT visible
// within 3 s of receiving it; a slower disk can break it. Redis
// Cluster is not supported (the member set and the value of a key live on
// different slots). Reads on an instance cut off from Redis wait for the
// Redis timeouts (300 ms) before going to the database.
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
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rediscache "github.com/go-redis/cache/v9"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"example.com/jobs/cache"
)

// Options configure a Cache. Zero values take the defaults.
type Options struct {
	URL       string        // redis://[user:pass@]host:port/db (REDIS_URL)
	Prefix    string        // prefix of keys and channels (CACHE_PREFIX); default "cache"
	TTL       time.Duration // lifetime of Redis entries (CACHE_TTL); default 5m
	LocalSize int           // local tier entries (CACHE_LOCAL_SIZE); 0 disables it
	LocalTTL  time.Duration // backstop lifetime of local entries; default 5s, at most TTL
	Logger    *slog.Logger

	// Lease bounds how long an instance that stopped hearing from Redis
	// keeps using its local tier, and so how long a write waits for an
	// instance that does not ack. Default 750ms; PingInterval defaults
	// to Lease/5.
	Lease        time.Duration
	PingInterval time.Duration
	// WriteWindow is how long a write keeps a key from being cached if
	// it never calls done (it crashed, or lost Redis after Invalidate).
	// It must exceed the time a transaction may take from Invalidate to a
	// visible COMMIT; see the package doc. Default 8s.
	WriteWindow time.Duration
}

// Cache is the distributed cache.Cache. It is safe for concurrent use.
type Cache struct {
	opts   Options
	log    *slog.Logger
	rdb    *goredis.Client
	rc     *rediscache.Cache // Redis tier: Get, and the value codec
	local  *cache.LRU
	flight singleflight.Group

	token    string // names this instance: member, and origin of messages
	channel  string // <prefix>:invalidate
	ackChan  string // <prefix>:ack:<token>
	members  string // <prefix>:members
	base     time.Time
	lease    atomic.Int64 // local tier usable until base+lease (ns)
	lostAt   atomic.Int64 // when the subscription was lost (ns since base), or -1 while subscribed
	seq      atomic.Uint64
	ps       *goredis.PubSub
	leaving  chan struct{} // closed by Close: stop renewing the membership
	pinged   chan struct{} // closed when ping has stopped
	left     chan struct{} // closed when the PONG of Close's PING arrives
	closing  chan struct{} // closed by Close after leaving: stop receiving
	acks     sync.WaitGroup
	wg       sync.WaitGroup
	warnedAt atomic.Int64

	mu      sync.Mutex
	waiters map[string]*waiter // writes waiting for acks, by message id
}

var _ cache.Cache = (*Cache)(nil)

// A write spends at most 1 s in the cache: maxAckWait for its
// invalidation, from the script to the last ack, before it gives up and
// rolls back, and endWait for removing its writer entry after COMMIT (which,
// when Redis does not answer in time, expires by itself). maxAckWait is
// above Lease plus its margin, so an instance that is paused or cut off
// delays writes (for at most one Lease) but does not fail them, while Redis
// itself answers in time.
const (
	maxAckWait = 900 * time.Millisecond
	endWait    = 100 * time.Millisecond
)

// New connects lazily: it does not fail when Redis is down, the cache
// serves from the database until Redis answers.
func New(opts Options) (*Cache, error) {
	ro, err := goredis.ParseURL(opts.URL)
	if err != nil {
		// The error never holds the URL, whose password must not be logged.
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
	// Without this, go-redis bounds a read by ReadTimeout only, whatever
	// the context says: the write budget below (maxAckWait, endWait) must
	// reach the socket.
	ro.ContextTimeoutEnabled = true
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
	if opts.Lease <= 0 {
		opts.Lease = 750 * time.Millisecond
	}
	if opts.Lease+opts.Lease/16 >= maxAckWait {
		return nil, fmt.Errorf("redis: Lease %v is too long: writers wait at most %v for an instance; use at most %v", opts.Lease, maxAckWait, 800*time.Millisecond)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = opts.Lease / 5
	}
	if opts.WriteWindow <= 0 {
		opts.WriteWindow = 8 * time.Second
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
		leaving: make(chan struct{}),
		pinged:  make(chan struct{}),
		left:    make(chan struct{}),
		closing: make(chan struct{}),
		waiters: make(map[string]*waiter),
	}
	// JSON rather than go-redis/cache's msgpack: values read back exactly
	// as an uncached load (msgpack decodes a time.Time in the local zone),
	// the same as cache.Memory, and readable with redis-cli.
	c.rc = rediscache.New(&rediscache.Options{Redis: c.rdb, Marshal: json.Marshal, Unmarshal: unmarshal})
	c.channel = opts.Prefix + ":invalidate"
	c.ackChan = opts.Prefix + ":ack:" + c.token
	c.members = opts.Prefix + ":members"
	c.lostAt.Store(0)
	c.ps = c.rdb.Subscribe(context.Background(), c.channel, c.ackChan)
	c.wg.Add(1)
	go c.receive()
	go c.ping()
	return c, nil
}

// Keys: the value and its meta share a hash tag, so the scripts that touch
// both stay valid on a Redis that shards by slot.
func (c *Cache) valueKey(key string) string { return c.opts.Prefix + ":{" + key + "}" }
func (c *Cache) metaKey(key string) string  { return c.opts.Prefix + ":{" + key + "}:m" }

func (c *Cache) sinceBase() int64 { return int64(time.Since(c.base)) }

// leased reports whether the local tier may be used now.
func (c *Cache) leased() bool { return c.sinceBase() < c.lease.Load() }

// Get implements cache.Cache.
func (c *Cache) Get(ctx context.Context, key string, v any, load func(context.Context) (any, error)) (cache.Source, error) {
	// The lease is checked before the stamp is taken and before the local
	// read: see the package doc.
	leased := c.leased()
	stamp := c.local.Stamp(key)
	if leased {
		if b, ok := c.local.Get(key); ok {
			if err := c.rc.Unmarshal(b, v); err == nil {
				return cache.SourceLocal, nil
			}
		}
	}
	// A shared load is used by a Get that joined it only if the load read
	// the database after the Get started, or its result was one the Redis
	// tier accepted: a load that Redis refused may have read the database
	// while a write was under way, and that write may have returned since
	// (its invalidation came before its commit, so the stamp cannot tell).
	started := time.Now()
	fetch := func(ctx context.Context) (fetched, error) {
		f, err := c.fetch(ctx, key, load)
		if err == nil && leased && f.keep {
			// Refused if the key was invalidated, or the subscription
			// lost, since the stamp was taken.
			c.local.SetIf(key, f.b, stamp)
		}
		return f, err
	}
	var f fetched
	var err error
	if leased {
		f, err = cache.Flight(ctx, &c.flight, cache.FlightKey(key, stamp), fetch)
		if err == nil && !f.keep && f.loadedAt.Before(started) {
			f, err = fetch(ctx)
		}
	} else {
		// Not subscribed: a missed invalidation would not bump the
		// stamp, so loads are not shared.
		f, err = fetch(ctx)
	}
	if err != nil {
		return cache.SourceMiss, err
	}
	b, src := f.b, f.src
	if err := c.rc.Unmarshal(b, v); err != nil {
		if src != cache.SourceRedis {
			return src, fmt.Errorf("cache: decode %q: %w", key, err)
		}
		// Stored by another version of the service with another type
		// (a rolling deploy): load it again and replace it.
		c.warn("cached value does not decode, reloading", err)
		b, _, err := c.loadAndStore(ctx, key, load, true)
		if err != nil {
			return cache.SourceMiss, err
		}
		return cache.SourceMiss, c.rc.Unmarshal(b, v)
	}
	return src, nil
}

// fetched is what fetch found.
type fetched struct {
	b        []byte
	src      cache.Source
	keep     bool      // a value read from the Redis tier, or one it accepted: the local tier may keep it
	loadedAt time.Time // when the database read began (zero for a Redis hit)
}

// fetch reads the Redis tier, or loads a value and stores it there when
// that is safe.
func (c *Cache) fetch(ctx context.Context, key string, load func(context.Context) (any, error)) (fetched, error) {
	var raw []byte
	err := c.rc.Get(ctx, c.valueKey(key), &raw) // *[]byte: the stored bytes, decoded later
	if err == nil && len(raw) > 0 {
		return fetched{b: raw, src: cache.SourceRedis, keep: true}, nil
	}
	redisUp := err == nil || errors.Is(err, rediscache.ErrCacheMiss)
	if !redisUp {
		c.warn("redis unavailable, reading through to the database", err)
	}
	f := fetched{src: cache.SourceMiss, loadedAt: time.Now()}
	f.b, f.keep, err = c.loadAndStore(ctx, key, load, redisUp)
	return f, err
}

// loadAndStore asks Redis whether the key may be stored (and under which
// nonce) BEFORE it reads the database, then stores only if the nonce did
// not change: see the package doc.
func (c *Cache) loadAndStore(ctx context.Context, key string, load func(context.Context) (any, error), redisUp bool) ([]byte, bool, error) {
	nonce := ""
	if redisUp {
		n, err := claim.Run(ctx, c.rdb, []string{c.metaKey(key)},
			newToken(), c.opts.WriteWindow.Milliseconds(), c.metaTTL().Milliseconds()).Text()
		switch {
		case err == nil:
			nonce = n
		case !errors.Is(err, goredis.Nil):
			c.warn("redis claim failed", err)
		}
	}
	val, err := load(ctx)
	if err != nil {
		return nil, false, err
	}
	b, err := c.rc.Marshal(val)
	if err != nil {
		return nil, false, fmt.Errorf("cache: encode %q: %w", key, err)
	}
	if nonce == "" {
		return b, false, nil
	}
	stored, err := store.Run(ctx, c.rdb, []string{c.valueKey(key), c.metaKey(key)},
		nonce, b, c.opts.TTL.Milliseconds(), c.metaTTL().Milliseconds()).Int()
	if err != nil {
		c.warn("redis store failed", err)
	}
	return b, stored == 1, nil
}

// metaTTL keeps a key's meta as long as its value, plus a write window.
func (c *Cache) metaTTL() time.Duration { return c.opts.TTL + c.opts.WriteWindow }

// The scripts read Redis's clock (TIME), so every writer expiry is measured
// on one clock. Scripts are replicated by their effects (Redis 7).
const nowMS = `local t = redis.call('TIME'); local now = t[1]*1000 + math.floor(t[2]/1000)
`

// claim: KEYS meta; ARGV nonce-if-new, window ms, meta ttl ms. Returns the
// nonce when the key may be stored, nil when a write is under way or the
// meta was missing (then it is created with a writer "new").
var claim = goredis.NewScript(nowMS + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'n', ARGV[1], 'w:new', now + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return false
end
local f = redis.call('HGETALL', KEYS[1])
local nonce, busy = false, false
for i = 1, #f, 2 do
  if f[i] == 'n' then nonce = f[i+1]
  elseif tonumber(f[i+1]) > now then busy = true
  else redis.call('HDEL', KEYS[1], f[i]) end
end
if busy then return false end
return nonce`)

// store: KEYS value, meta; ARGV nonce, value, ttl ms, meta ttl ms.
var store = goredis.NewScript(`
if redis.call('HGET', KEYS[2], 'n') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`)

// begin: KEYS value, meta, members; ARGV nonce, write id, window ms, meta
// ttl ms, channel, message. Returns {now, member, expiry, member, expiry...}.
var begin = goredis.NewScript(nowMS + `
redis.call('HSET', KEYS[2], 'n', ARGV[1], 'w:' .. ARGV[2], now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local out = {now}
local m = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #m do out[#out+1] = m[i] end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return out`)

// end: KEYS meta; ARGV write id.
var end = goredis.NewScript(`redis.call('HDEL', KEYS[1], 'w:' .. ARGV[1]) return 1`)

// renew: KEYS members; ARGV token, lease ms. Memberships only grow (GT).
var renew = goredis.NewScript(nowMS + `
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]), ARGV[1])
return 1`)

// Invalidate implements cache.Cache; see the package doc for the protocol.
func (c *Cache) Invalidate(ctx context.Context, key string) (done func(committed bool), err error) {
	// The whole invalidation, the script included, takes at most
	// maxAckWait: a frozen Redis fails a write in time, it does not hold it.
	ctx, cancel := context.WithTimeout(ctx, maxAckWait)
	defer cancel()
	c.local.Begin(key) // this instance at once; no local store until done
	id := strconv.FormatUint(c.seq.Add(1), 10)
	w := &waiter{done: make(chan struct{})}
	c.mu.Lock()
	c.waiters[id] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
	}()
	var once sync.Once
	release := func(committed bool) {
		once.Do(func() { c.end(key, id, committed) })
	}
	reply, err := begin.Run(ctx, c.rdb, []string{c.valueKey(key), c.metaKey(key), c.members},
		newToken(), c.token+"."+id, c.opts.WriteWindow.Milliseconds(), c.metaTTL().Milliseconds(),
		c.channel, c.token+"|"+id+"|"+key).Slice()
	if err != nil {
		release(false)
		return nil, c.fail(key, fmt.Errorf("invalidate: %w", err))
	}
	sent := time.Now()
	now, until, err := parseMembers(reply)
	if err != nil {
		release(false)
		return nil, c.fail(key, err)
	}
	c.mu.Lock()
	w.pending = make(map[string]time.Time)
	for m, expiry := range until {
		if m != c.token && expiry > now && !w.acked[m] {
			// Wait at most until its membership ends by Redis's clock,
			// measured here as a duration from when the reply came back
			// (later than Redis's now: waiting longer is safe), plus the
			// clock-rate margin.
			w.pending[m] = sent.Add(time.Duration(expiry-now)*time.Millisecond + c.opts.Lease/16)
		}
	}
	deaf := len(w.pending) > 0 && c.lostAt.Load() >= 0
	c.mu.Unlock()
	if deaf {
		// Acks come on this instance's subscription, which is down: it
		// would only wait out every membership. Fail fast instead.
		release(false)
		return nil, c.fail(key, errors.New("not subscribed, so no ack can arrive"))
	}

	// Wait until each member acked or its membership ended, whichever
	// comes first for that member.
	waitedOut := false
	for {
		c.mu.Lock()
		t := time.Now()
		var next time.Time // the earliest membership end still awaited
		for m, end := range w.pending {
			if !t.Before(end) {
				delete(w.pending, m) // its lease has run out: it reads past its local tier
				waitedOut = true
			} else if next.IsZero() || end.Before(next) {
				next = end
			}
		}
		w.check()
		c.mu.Unlock()
		if next.IsZero() {
			break
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-w.done:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			c.mu.Lock()
			late := slices.Sorted(maps.Keys(w.pending))
			c.mu.Unlock()
			release(false)
			return nil, c.fail(key, fmt.Errorf("instances %v neither acked nor left in time: %w", late, ctx.Err()))
		}
		timer.Stop()
	}
	if waitedOut {
		// Not acked, but their leases have run out: correct, and worth knowing.
		c.warn("invalidation not acked by every instance, waited out their leases", errors.New(key))
	}
	return release, nil
}

// end is the done of Invalidate. The local tier may store again at once
// (it only keeps what the Redis tier accepted); the writer is removed from
// the key's meta only if the write committed, because a failed COMMIT may
// still take effect: then the writer expires with WriteWindow.
func (c *Cache) end(key, id string, committed bool) {
	c.local.End(key)
	if !committed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), endWait)
	defer cancel()
	if err := end.Run(ctx, c.rdb, []string{c.metaKey(key)}, c.token+"."+id).Err(); err != nil {
		// Harmless: the key is cached again after WriteWindow.
		c.warn("redis end of write failed", err)
	}
}

// fail logs (rate-limited) and wraps a failed invalidation.
func (c *Cache) fail(key string, err error) error {
	c.warn("invalidation failed; the write is rolled back", err)
	return fmt.Errorf("cache: invalidate %q: %w", key, err)
}

// parseMembers reads begin's reply: Redis's now, then member/expiry pairs.
func parseMembers(reply []any) (now int64, until map[string]int64, err error) {
	bad := errors.New("redis: unexpected reply of the invalidation script")
	if len(reply) == 0 || len(reply)%2 != 1 {
		return 0, nil, bad
	}
	now, ok := reply[0].(int64)
	if !ok {
		return 0, nil, bad
	}
	until = make(map[string]int64)
	for i := 1; i+1 < len(reply); i += 2 {
		m, ok1 := reply[i].(string)
		s, ok2 := reply[i+1].(string)
		expiry, err := strconv.ParseFloat(s, 64)
		if !ok1 || !ok2 || err != nil {
			return 0, nil, bad
		}
		until[m] = int64(expiry)
	}
	return now, until, nil
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

// Close implements cache.Cache. It leaves the member set while still
// subscribed, then sends a PING on the subscription: its PONG comes after
// every invalidation published before the ZREM, so when it arrives every
// writer that listed this instance has its ack on the way, and writers
// that start later do not wait for this instance at all. Unsubscribed first,
// it would make the writers that had just listed it wait out its
// membership, which on a loaded machine ran past maxAckWait and failed
// their writes.
func (c *Cache) Close() error {
	close(c.leaving)
	<-c.pinged // no renewal can bring the membership back
	ctx, cancel := context.WithTimeout(context.Background(), maxAckWait)
	defer cancel()
	if c.rdb.ZRem(ctx, c.members, c.token).Err() == nil && c.ps.Ping(ctx, leavePing) == nil {
		select {
		case <-c.left:
		case <-ctx.Done():
		}
	}
	close(c.closing)
	err := c.ps.Close()
	c.wg.Wait()
	c.acks.Wait() // after receive has stopped: no ack can start now
	return errors.Join(err, c.rdb.Close())
}

// leavePing is the payload of Close's PING.
const leavePing = "leave"

// receive is the subscriber loop: it applies invalidations, counts acks,
// and holds the lease. go-redis reconnects and resubscribes by itself after
// any error, including the deadline here: a subscription that delivers
// nothing, not even the PONGs of ping, for 2 x Lease is taken for dead.
func (c *Cache) receive() {
	defer c.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*c.opts.Lease)
		msg, err := c.ps.Receive(ctx)
		cancel()
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
			backoff = min(2*backoff, 250*time.Millisecond)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Channel == c.channel {
				c.subscribed()
			}
		case *goredis.Pong:
			if m.Payload == leavePing {
				close(c.left)
			} else {
				c.extend(m.Payload)
			}
		case *goredis.Message:
			switch m.Channel {
			case c.channel:
				c.onInvalidate(m.Payload)
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
// (nothing loaded before this point may be stored); the next PONG gives the
// first lease.
func (c *Cache) subscribed() {
	c.lease.Store(0) // only PONGs on this connection count from now on
	c.local.Clear()
	if c.lostAt.Swap(-1) > 0 {
		c.log.Info("cache: invalidation subscription restored")
	}
}

// extend extends the lease from a PONG whose payload is the PING's send
// time; ping sent it only after renewing the membership.
func (c *Cache) extend(payload string) {
	sent, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || c.lostAt.Load() >= 0 {
		return
	}
	if until := sent + int64(c.opts.Lease); until > c.lease.Load() {
		c.lease.Store(until)
	}
}

func (c *Cache) onInvalidate(payload string) {
	origin, rest, ok1 := strings.Cut(payload, "|")
	id, key, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 || origin == c.token {
		return // the writer dropped its own key before publishing
	}
	c.local.Invalidate(key)
	// The ack goes out only after the key is gone from this local tier.
	c.acks.Add(1)
	go func() {
		defer c.acks.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.rdb.Publish(ctx, c.opts.Prefix+":ack:"+origin, id+"|"+c.token).Err()
	}()
}

func (c *Cache) onAck(payload string) {
	id, member, ok := strings.Cut(payload, "|")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.waiters[id]; ok {
		w.ack(member)
	}
}

// ping renews the membership, then PINGs the subscribed connection, every
// PingInterval. The order matters: see the package doc.
func (c *Cache) ping() {
	defer close(c.pinged)
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.leaving:
			return
		case <-t.C:
		}
		if c.lostAt.Load() >= 0 {
			// Not subscribed: there is no lease to cover, and writers must
			// not wait for an instance that cannot hear them.
			continue
		}
		if l := c.lease.Load(); l != 0 && !c.leased() {
			// The lease ran out while subscribed: this instance was paused,
			// or heard nothing for a Lease. Its subscription may be about
			// to fail (receive's deadline); give receive a tick to notice
			// before becoming a member again, then start over like a new
			// subscriber.
			if c.lease.CompareAndSwap(l, 0) {
				c.local.Clear()
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.PingInterval)
		sent := c.sinceBase()
		err := renew.Run(ctx, c.rdb, []string{c.members}, c.token, c.opts.Lease.Milliseconds()).Err()
		if err == nil {
			err = c.ps.Ping(ctx, strconv.FormatInt(sent, 10))
		}
		cancel()
		if err != nil {
			c.warn("redis lease renewal failed", err)
		}
	}
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

// waiter collects the acks of one invalidation.
type waiter struct {
	pending map[string]time.Time // members not acked yet, and until when to wait; nil until begin returned
	acked   map[string]bool      // acks that came before begin returned
	done    chan struct{}
	closed  bool
}

// ack records a member's ack. Called with c.mu held.
func (w *waiter) ack(member string) {
	if w.pending == nil {
		if w.acked == nil {
			w.acked = make(map[string]bool)
		}
		w.acked[member] = true
		return
	}
	delete(w.pending, member)
	w.check()
}

// check closes done once every member acked. Called with c.mu held.
func (w *waiter) check() {
	if !w.closed && w.pending != nil && len(w.pending) == 0 {
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
