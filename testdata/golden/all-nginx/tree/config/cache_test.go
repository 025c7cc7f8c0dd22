package config

import (
	"strings"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	c, err := Load(env("REDIS_URL", ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "" || c.CacheLocalSize != 10000 || c.CacheTTL != 5*time.Minute {
		t.Errorf("cache defaults = %+v", c)
	}

	c, err = Load(env("REDIS_URL", "redis://redis:6379/1", "CACHE_LOCAL_SIZE", "0", "CACHE_TTL", "30s", "CLUSTER_MODE", "true",
		"S3_ENDPOINT", "minio:9000", "S3_ACCESS_KEY", "a", "S3_SECRET_KEY", "s")) // blob, for cluster mode
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "redis://redis:6379/1" || c.CacheLocalSize != 0 || c.CacheTTL != 30*time.Second {
		t.Errorf("cache values = %+v", c)
	}

	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"REDIS_URL", "", "CLUSTER_MODE", "true"}, "REDIS_URL is required when CLUSTER_MODE=true: an in-memory cache diverges between instances"},
		{[]string{"REDIS_URL", "http://redis:6379"}, `REDIS_URL="http://redis:6379"`},
		{[]string{"REDIS_URL", "redis:6379"}, `REDIS_URL="redis:6379"`},
		{[]string{"CACHE_LOCAL_SIZE", "-1"}, `CACHE_LOCAL_SIZE="-1"`},
		{[]string{"CACHE_TTL", "0s"}, `CACHE_TTL="0s"`},
		{[]string{"CACHE_TTL", "soon"}, `CACHE_TTL="soon"`},
	} {
		if _, err := Load(env(tc.env...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error with %q", tc.env, err, tc.want)
		}
	}
}

// The cache's keys start with the service's name unless CACHE_PREFIX says
// otherwise, so that two services on one Redis database share nothing.
func TestCachePrefix(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.CachePrefix != "shop" {
		t.Errorf("CachePrefix = %q, want the service name", c.CachePrefix)
	}
	if c, _ := Load(env("CACHE_PREFIX", "billing")); c.CachePrefix != "billing" {
		t.Errorf("CACHE_PREFIX=billing gives %q", c.CachePrefix)
	}
}

// An invalid REDIS_URL is named in the error without its password.
func TestRedisURLPasswordNotEchoed(t *testing.T) {
	for _, u := range []string{"http://user:s3cret@redis:6379", "redis://:s3cret@redis:6379/%zz", "s3cret@redis:6379"} {
		_, err := Load(env("REDIS_URL", u))
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
			t.Fatalf("Load(REDIS_URL=%q) = %v, want an error naming REDIS_URL", u, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error echoes the password: %v", err)
		}
	}
}
