// Package config reads the service's settings from environment variables and
// checks them before anything starts, so a bad value stops the process with a
// message that names the variable instead of failing later at random.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config holds every setting of the service.
type Config struct {
	Port       int        // PORT: HTTP port to listen on
	InstanceID string     // INSTANCE_ID: names this instance in headers and logs
	Cluster    bool       // CLUSTER_MODE: refuse single-node defaults
	LogLevel   slog.Level // LOG_LEVEL: debug, info, warn, error

	// MaxBodyBytes caps request bodies (MAX_BODY_BYTES); the load balancer
	// is configured with the same limit.
	MaxBodyBytes int64
	// DrainDelay is how long readiness reports 503 before the listener closes
	// (SHUTDOWN_DRAIN_DELAY), so load balancers stop sending new requests first.
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the listener closed (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// db
	// DatabaseURL is the PostgreSQL connection URL (DATABASE_URL); required,
	// there is no single-node stand-in for the database.
	DatabaseURL string
	// DBPoolSize is the most connections this instance opens (DB_POOL_SIZE).
	// Every replica opens its own pool: replicas x DBPoolSize must stay
	// below the server's max_connections minus a reserve.
	DBPoolSize int
	// MigrateOnStart applies pending migrations, under a lock, before
	// serving (MIGRATE_ON_START); off, run the migrate command instead.
	MigrateOnStart bool

	// cache
	// RedisURL is the Redis that every instance's cache shares (REDIS_URL);
	// empty: an in-memory cache, correct on a single node only.
	RedisURL string
	// CachePrefix starts every key and channel of the cache in Redis
	// (CACHE_PREFIX), so that services sharing a Redis database do not
	// share entries.
	CachePrefix string
	// CacheLocalSize is the most entries of the in-process tier
	// (CACHE_LOCAL_SIZE); 0 disables it (and, without Redis, caching).
	CacheLocalSize int
	// CacheTTL is how long a value stays cached (CACHE_TTL): in Redis, or
	// in memory without Redis. It also bounds how long Redis may serve a
	// value whose invalidation was lost in a Redis outage.
	CacheTTL time.Duration

	// blob
	// BlobDir is the local directory for files when no S3 server is set
	// (BLOB_DIR); single-node only.
	BlobDir string
	// S3Endpoint is host:port of the S3 server (S3_ENDPOINT); when set,
	// files go to its bucket S3Bucket, shared by every instance.
	S3Endpoint  string
	S3AccessKey string // S3_ACCESS_KEY
	S3SecretKey string // S3_SECRET_KEY
	S3Bucket    string // S3_BUCKET
	S3UseSSL    bool   // S3_USE_SSL: https to the S3 server
	// MaxFileBytes caps an uploaded file (MAX_FILE_BYTES); it replaces
	// MaxBodyBytes on the file routes.
	MaxFileBytes int64

	// worker
	// WorkerInterval is the schedule period of the jobs (WORKER_INTERVAL);
	// a job runs once per slot, slot = unix time truncated to the interval.
	WorkerInterval time.Duration
	// LeaderPoll is how often followers try to take the leader lease
	// (LEADER_POLL_INTERVAL); the lease is 2 polls, renewed every half
	// poll, so a frozen or dead leader is replaced within 3 polls.
	LeaderPoll time.Duration
}

// Load reads the configuration through getenv and reports every invalid
// variable at once.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Port:            r.int("PORT", 8080, 0, 65535),
		InstanceID:      r.str("INSTANCE_ID", defaultInstanceID()),
		Cluster:         r.bool("CLUSTER_MODE", false),
		LogLevel:        r.level("LOG_LEVEL", slog.LevelInfo),
		MaxBodyBytes:    int64(r.int("MAX_BODY_BYTES", 1<<20, 1, 1<<40)),
		DrainDelay:      r.duration("SHUTDOWN_DRAIN_DELAY", 3*time.Second),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	// db
	c.DatabaseURL = r.required("DATABASE_URL",
		"the db feature keeps notes in PostgreSQL; set a URL such as postgres://user:pass@host:5432/db?sslmode=disable")
	c.DBPoolSize = r.int("DB_POOL_SIZE", 10, 1, 1000)
	c.MigrateOnStart = r.bool("MIGRATE_ON_START", true)
	// cache
	c.RedisURL = r.str("REDIS_URL", "")
	c.CachePrefix = r.str("CACHE_PREFIX", "shop")
	c.CacheLocalSize = r.int("CACHE_LOCAL_SIZE", 10000, 0, 10_000_000)
	c.CacheTTL = r.duration("CACHE_TTL", 5*time.Minute)
	if c.CacheTTL < time.Second {
		r.fail("CACHE_TTL", r.getenv("CACHE_TTL"), "want at least 1s")
	}
	if c.RedisURL == "" && c.Cluster {
		r.clusterNeeds("REDIS_URL", "an in-memory cache diverges between instances")
	}
	if u, err := url.Parse(c.RedisURL); c.RedisURL != "" {
		tcp := u != nil && u.Host != "" && (u.Scheme == "redis" || u.Scheme == "rediss")
		socket := u != nil && u.Path != "" && u.Scheme == "unix"
		if err != nil || !tcp && !socket {
			r.fail("REDIS_URL", redact(c.RedisURL), "want a URL such as redis://host:6379/0 (rediss:// for TLS)")
		}
	}
	// blob
	c.BlobDir = r.str("BLOB_DIR", "./data/blobs")
	c.S3Endpoint = r.str("S3_ENDPOINT", "")
	c.S3Bucket = r.str("S3_BUCKET", "shop")
	c.S3UseSSL = r.bool("S3_USE_SSL", false)
	c.MaxFileBytes = int64(r.int("MAX_FILE_BYTES", 32<<20, 1, 1<<40))
	switch {
	case strings.Contains(c.S3Endpoint, "/"):
		r.fail("S3_ENDPOINT", c.S3Endpoint, "want host:port without scheme or path (S3_USE_SSL=true for https)")
	case c.S3Endpoint != "":
		c.S3AccessKey = r.required("S3_ACCESS_KEY", "S3_ENDPOINT is set")
		c.S3SecretKey = r.required("S3_SECRET_KEY", "S3_ENDPOINT is set")
	case c.Cluster:
		r.clusterNeeds("S3_ENDPOINT", "files in a local directory are not shared between instances")
	}
	// worker
	c.WorkerInterval = r.duration("WORKER_INTERVAL", time.Minute)
	// Whole milliseconds: slots are listed as unix milliseconds.
	if c.WorkerInterval < 100*time.Millisecond || c.WorkerInterval%time.Millisecond != 0 {
		r.fail("WORKER_INTERVAL", r.getenv("WORKER_INTERVAL"), "want at least 100ms, in whole milliseconds")
	}
	c.LeaderPoll = r.duration("LEADER_POLL_INTERVAL", 500*time.Millisecond)
	// The lease is 2 polls and a frozen or dead leader is replaced within 3
	// (see postgres.Elector): at least 50ms so that a renew's round trip is
	// small next to the lease, at most 5s so that takeover stays within 15s.
	if c.LeaderPoll < 50*time.Millisecond || c.LeaderPoll > 5*time.Second {
		r.fail("LEADER_POLL_INTERVAL", r.getenv("LEADER_POLL_INTERVAL"), "want from 50ms to 5s")
	}

	return c, r.err()
}

// defaultInstanceID is the host name (a container's id under Docker) plus
// the process id, which tells apart instances that share one host.
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "instance"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// reader collects one error per invalid variable.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s=%q: %s", name, value, want))
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

// required is for settings without a default; why says what needs it.
func (r *reader) required(name, why string) string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("config: %s is required: %s", name, why))
	}
	return v
}

// clusterNeeds reports a single-node default that cluster mode refuses.
func (r *reader) clusterNeeds(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s is required when CLUSTER_MODE=true: %s", name, why))
}

// redact hides the user and password of a URL that is echoed in an error:
// everything before the last @.
func redact(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	if scheme, _, ok := strings.Cut(raw[:at], "://"); ok {
		return scheme + "://xxxxx" + raw[at:]
	}
	return "xxxxx" + raw[at:]
}

func (r *reader) int(name string, def, min, max int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.fail(name, v, fmt.Sprintf("want a whole number from %d to %d", min, max))
		return def
	}
	return n
}

func (r *reader) bool(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "want true or false")
		return def
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(name, v, "want a duration such as 500ms or 5s")
		return def
	}
	return d
}

func (r *reader) level(name string, def slog.Level) slog.Level {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, v, "want debug, info, warn or error")
		return def
	}
	return l
}
