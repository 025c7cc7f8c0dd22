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
	"slices"
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
	LogFormat  string     // LOG_FORMAT: json (for log collectors) or text (for a terminal)

	// MaxBodyBytes caps request bodies (MAX_BODY_BYTES); the load balancer
	// is configured with the same limit.
	MaxBodyBytes int64
	// DrainDelay is how long readiness reports 503 before the listener closes
	// (SHUTDOWN_DRAIN_DELAY), so load balancers stop sending new requests first.
	// Its default is 0 outside cluster mode: no load balancer to wait for, and
	// Ctrl-C on a development instance stops it at once.
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

// Var is an environment variable that Load reads.
type Var struct {
	Name string
	// Default is the value used when the variable is empty, as it would be
	// written in the variable ("" for none, <...> for a value computed at
	// start); ClusterDefault is set when CLUSTER_MODE=true changes it.
	Default, ClusterDefault string
	Required                bool // no default: Load fails without it
}

// Vars lists the variables Load reads, in the order it reads them, with their
// defaults. It runs Load itself on an empty environment (and again in
// cluster mode) and records what Load asks for, so that `server --help`,
// which prints this list, cannot drift from what Load does.
func Vars() []Var {
	var vars []Var
	for _, cluster := range []string{"", "true"} {
		r := reader{getenv: func(name string) string {
			if name == "CLUSTER_MODE" {
				return cluster
			}
			return ""
		}}
		load(&r)
		for _, v := range r.vars {
			i := slices.IndexFunc(vars, func(o Var) bool { return o.Name == v.Name })
			switch {
			case i < 0:
				vars = append(vars, v)
			case vars[i].Default != v.Default:
				vars[i].ClusterDefault = v.Default
			}
		}
	}
	return vars
}

// Load reads the configuration through getenv and reports every invalid
// variable at once.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := load(&r)
	return c, r.err()
}

func load(r *reader) Config {
	c := Config{
		Port:       r.int("PORT", 8080, 0, 65535),
		InstanceID: r.get("INSTANCE_ID", "<host name>-<process id>"),
		Cluster:    r.bool("CLUSTER_MODE", false),
		LogLevel:   r.level("LOG_LEVEL", slog.LevelInfo),
		LogFormat: r.oneOf("LOG_FORMAT", "json", "text",
			"want json (the default: one object per line, for log collectors) or text (for a terminal)"),
		MaxBodyBytes:    int64(r.int("MAX_BODY_BYTES", 1<<20, 1, 1<<40)),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	// Computed here rather than passed as the default: Vars would show the
	// id of the process that prints `server --help`.
	if c.InstanceID == "" {
		c.InstanceID = defaultInstanceID()
	}
	// In a cluster the load balancer must see /readyz fail before the
	// listener closes; alone, there is no one to wait for.
	drain := time.Duration(0)
	if c.Cluster {
		drain = 3 * time.Second
	}
	c.DrainDelay = r.duration("SHUTDOWN_DRAIN_DELAY", drain)
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
	// Read whatever S3_ENDPOINT is, so that Vars lists them.
	c.S3AccessKey = r.str("S3_ACCESS_KEY", "")
	c.S3SecretKey = r.str("S3_SECRET_KEY", "")
	c.S3Bucket = r.str("S3_BUCKET", "shop")
	c.S3UseSSL = r.bool("S3_USE_SSL", false)
	c.MaxFileBytes = int64(r.int("MAX_FILE_BYTES", 32<<20, 1, 1<<40))
	switch {
	case strings.Contains(c.S3Endpoint, "/"):
		r.fail("S3_ENDPOINT", c.S3Endpoint, "want host:port without scheme or path (S3_USE_SSL=true for https)")
	case c.S3Endpoint != "":
		if c.S3AccessKey == "" {
			r.missing("S3_ACCESS_KEY", "S3_ENDPOINT is set")
		}
		if c.S3SecretKey == "" {
			r.missing("S3_SECRET_KEY", "S3_ENDPOINT is set")
		}
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

	return c
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

// reader collects one error per invalid variable, and every variable read
// (for Vars).
type reader struct {
	getenv func(string) string
	errs   []error
	vars   []Var
}

// get records the variable and its default, and returns its value.
func (r *reader) get(name, def string) string {
	r.vars = append(r.vars, Var{Name: name, Default: def})
	return strings.TrimSpace(r.getenv(name))
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s=%q: %s", name, value, want))
}

func (r *reader) str(name, def string) string {
	if v := r.get(name, def); v != "" {
		return v
	}
	return def
}

// oneOf is str limited to def and one other value.
func (r *reader) oneOf(name, def, other, want string) string {
	v := r.str(name, def)
	if v != def && v != other {
		r.fail(name, v, want)
		return def
	}
	return v
}

// required is for settings without a default; why says what needs it.
func (r *reader) required(name, why string) string {
	v := r.get(name, "")
	r.vars[len(r.vars)-1].Required = true
	if v == "" {
		r.missing(name, why)
	}
	return v
}

func (r *reader) missing(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s is required: %s", name, why))
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
	v := r.get(name, strconv.Itoa(def))
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
	v := r.get(name, strconv.FormatBool(def))
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
	v := r.get(name, def.String())
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
	v := r.get(name, strings.ToLower(def.String()))
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
