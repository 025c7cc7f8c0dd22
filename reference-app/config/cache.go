package config

import (
	"net/url"
	"strings"
	"time"
)

// Cache holds the settings of the cache feature.
type Cache struct {
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
}

func loadCache(r *reader, c *Config) {
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
