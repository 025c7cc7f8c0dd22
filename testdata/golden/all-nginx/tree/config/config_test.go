package config

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	// db: DATABASE_URL is required; tests that need it unset pass "".
	m["DATABASE_URL"] = "postgres://app:secret@localhost:5432/app?sslmode=disable"
	// cache: cluster mode needs REDIS_URL; tests of the in-memory default pass "".
	m["REDIS_URL"] = "redis://localhost:6379/0"
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.Cluster || c.InstanceID == "" || c.MaxBodyBytes != 1<<20 || c.DrainDelay != 3*time.Second {
		t.Errorf("defaults = %+v", c)
	}
}

func TestValues(t *testing.T) {
	c, err := Load(env("PORT", "9000", "INSTANCE_ID", "app-2", "CLUSTER_MODE", "true", "SHUTDOWN_TIMEOUT", "5s",
		"S3_ENDPOINT", "minio:9000", "S3_ACCESS_KEY", "a", "S3_SECRET_KEY", "s", // blob
	))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9000 || c.InstanceID != "app-2" || !c.Cluster || c.ShutdownTimeout != 5*time.Second {
		t.Errorf("got %+v", c)
	}
}

// Every invalid variable is named, all at once.
func TestInvalidValuesAreNamed(t *testing.T) {
	_, err := Load(env("PORT", "70000", "CLUSTER_MODE", "maybe", "SHUTDOWN_DRAIN_DELAY", "soon", "LOG_LEVEL", "loud"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{`PORT="70000"`, `CLUSTER_MODE="maybe"`, `SHUTDOWN_DRAIN_DELAY="soon"`, `LOG_LEVEL="loud"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}
